// Tokenizer: a Hugging Face tokenizer.json with a byte-level BPE model (the DeepSeek V3/V4
// family) loaded into C++: added tokens -> pre-tokenizer -> BPE -> optional post-processor
// specials. Plain mode only (no chat template). Owns: loading and the encode pipeline.
// Does not own: datasets or sample windows (text_calibration.hpp).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_vocabulary.hpp"
#include "tokenizer/bpe_model.hpp"
#include "tokenizer/pre_tokenizer.hpp"

namespace qf::tokenizer {

// The DeepSeek beginning-of-sequence token text (full-width bars, U+2581 separators).
extern const char* const kDeepSeekBosToken;

class Tokenizer {
 public:
  // Reads and parses tokenizer.json. Throws qf::Error naming the file for unreadable or invalid
  // JSON and for anything this implementation does not support: a normalizer other than none or
  // an empty Sequence, a model other than BPE, unknown pre-tokenizer or post-processor types.
  static Tokenizer load(const std::string& path);
  static Tokenizer from_json(const nlohmann::json& config, const std::string& label);

  // Ids of `text` (UTF-8) without post-processor specials: HF
  // tokenizer.encode(text, add_special_tokens=False).ids. Added tokens written in the text are
  // matched (HF's default). Throws qf::Error on invalid UTF-8, naming the byte offset.
  std::vector<int64_t> encode(std::string_view text) const;
  // HF encode(text, add_special_tokens=True).ids: prefix_ids() + encode(text) + suffix_ids().
  std::vector<int64_t> encode_with_special_tokens(std::string_view text) const;

  // The pieces the pre-tokenizer makes of a plain segment (byte-level mapped), for tests/logs.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

  // Specials the post-processor puts before/after a single sequence (TemplateProcessing
  // "single"; empty for none/ByteLevel). DeepSeek: prefix = [BOS].
  const std::vector<int64_t>& prefix_ids() const { return prefix_ids_; }
  const std::vector<int64_t>& suffix_ids() const { return suffix_ids_; }

  // The BOS id: the post-processor's single prefix id if it has exactly one, else the added
  // token `bos_token`; nullopt if neither exists.
  std::optional<int64_t> bos_id(const std::string& bos_token = kDeepSeekBosToken) const;

  // Added tokens first, then the model vocabulary (HF token_to_id).
  std::optional<int64_t> token_to_id(const std::string& token) const;
  // 1 + the largest id of the vocabulary and the added tokens.
  int64_t vocab_size() const;
  const AddedVocabulary& added_vocabulary() const { return added_; }
  const BpeModel& model() const { return model_; }

 private:
  AddedVocabulary added_;
  PreTokenizer pre_tokenizer_;
  BpeModel model_;
  std::vector<int64_t> prefix_ids_;
  std::vector<int64_t> suffix_ids_;
};

}  // namespace qf::tokenizer
