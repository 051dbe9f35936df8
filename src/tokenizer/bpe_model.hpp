// BpeModel: the tokenizer.json "model" of type BPE (vocab + ranked merges) and the merge loop
// that turns one pre-tokenized piece into ids, as HF tokenizers' Word::merge_all does.
// Owns: vocab/merge tables and merge order. Does not own: piece boundaries or added tokens.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qf::tokenizer {

class BpeModel {
 public:
  // Parses "model": {"type": "BPE", "vocab": {token: id}, "merges": ["a b", ...] or [["a","b"],
  // ...], optional unk_token, byte_fallback, fuse_unk, ignore_merges}. Throws qf::Error naming
  // `label` for a merge whose parts or result are not in the vocabulary, duplicate ids, and the
  // options this implementation does not have (continuing_subword_prefix, end_of_word_suffix,
  // dropout).
  static BpeModel from_json(const nlohmann::json& model, const std::string& label);

  // Appends the ids of one piece (already in the model's alphabet) to `out`. Merges are applied
  // lowest rank first, leftmost first among equal ranks. A character missing from the vocabulary
  // becomes <0xXX> byte tokens (byte_fallback), else unk_token, else is dropped (as HF does).
  void encode_piece(std::string_view piece, std::vector<int64_t>& out) const;

  std::optional<int64_t> token_to_id(const std::string& token) const;
  int64_t max_id() const { return max_id_; }
  size_t n_vocab() const { return vocab_.size(); }  // HF get_vocab_size(): entries, not max id
  size_t n_merges() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank = 0;
    int32_t new_id = 0;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id, right id) -> rank, merged id
  std::optional<int32_t> unk_id_;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  int64_t max_id_ = -1;
};

}  // namespace qf::tokenizer
