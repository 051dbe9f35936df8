// PreTokenizer: the tokenizer.json "pre_tokenizer" (Split with Regex/String patterns, Digits,
// ByteLevel, and Sequences of them) as a function text -> pieces, with HF tokenizers' semantics.
// Owns: piece boundaries and the byte-level mapping. Does not own: BPE (bpe_model.hpp) or added
// tokens (added_vocabulary.hpp), which are cut out of the text before this runs.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.hpp"

namespace qf::tokenizer {

// How a Split step treats the matched delimiters (HF SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
 public:
  // Parses a "pre_tokenizer" value (null: the whole text is one piece). Throws qf::Error naming
  // `label` (the file) for unsupported types or options, e.g. a ByteLevel that is not last.
  static PreTokenizer from_json(const nlohmann::json& config, const std::string& label);

  // The pieces of `text` (valid UTF-8), in order, none empty. When byte_level(), each piece is
  // already mapped to the byte-level alphabet (byte_level.hpp).
  std::vector<std::string> split(std::string_view text) const;

  bool byte_level() const { return byte_level_; }

 private:
  struct Step {
    enum class Kind { kSplit, kPrefixSpace } kind = Kind::kSplit;
    std::shared_ptr<Regex> regex;  // shared: PreTokenizer stays copyable
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
  };
  void add_json(const nlohmann::json& config, const std::string& label, bool last);

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

// The GPT-2 pattern ByteLevel uses when "use_regex" is true.
extern const char* const kGpt2SplitPattern;

}  // namespace qf::tokenizer
