// AddedVocabulary: tokenizer.json "added_tokens" (special tokens such as
// <｜begin▁of▁sentence｜> and plain added tokens) and the cut of a text into added-token matches
// and the plain segments between them, as HF tokenizers does before pre-tokenization.
// Owns: token table and matching rules. Does not own: what happens to the plain segments.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qf::tokenizer {

class BpeModel;

struct AddedToken {
  std::string content;
  int64_t id = 0;
  bool special = false;
  bool lstrip = false;       // swallow whitespace before the match
  bool rstrip = false;       // swallow whitespace after the match
  bool single_word = false;  // match only when not inside a word
  bool normalized = true;    // matched after normalization (HF default: !special)
};

// One part of a text: an added token (id >= 0) or a plain segment (id == -1).
struct TextSegment {
  std::string_view text;
  int64_t id = -1;
};

class AddedVocabulary {
 public:
  // Parses the "added_tokens" array (null or absent: none). Ids follow HF tokenizers, not the
  // "id" fields: a token whose content is in the model vocabulary takes that id, the others are
  // numbered in file order from the model's vocabulary size (HF only warns when the file's id
  // differs; so does this, once per token). A repeated content keeps its first id. Throws
  // qf::Error naming `label` for entries without a string content, or empty/invalid contents.
  static AddedVocabulary from_json(const nlohmann::json& added_tokens, const std::string& label,
                                   const BpeModel& model);

  // Cuts `text` into added tokens and plain segments (none empty), in order. Tokens with
  // normalized=false are matched first, then the others inside the remaining segments (the
  // normalizer is the identity here, see tokenizer.hpp); each pass takes the leftmost match,
  // longest first, as HF's aho-corasick LeftmostLongest does.
  std::vector<TextSegment> split(std::string_view text) const;

  std::optional<int64_t> token_to_id(const std::string& content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  int64_t max_id() const;

 private:
  // A byte trie over the token contents of one pass.
  struct TrieNode {
    std::vector<std::pair<unsigned char, int>> children;  // sorted by byte
    int token = -1;                                       // index into tokens_ if a token ends here
  };
  struct Trie {
    std::vector<TrieNode> nodes{TrieNode{}};
    void insert(const std::string& key, int token);
    // Index of the longest token that starts at text[pos], or -1.
    int longest_at(std::string_view text, size_t pos, size_t* length) const;
  };
  void split_pass(const Trie& trie, std::string_view text, std::vector<TextSegment>& out) const;

  std::vector<AddedToken> tokens_;
  Trie raw_trie_;         // normalized == false
  Trie normalized_trie_;  // normalized == true
};

}  // namespace qf::tokenizer
