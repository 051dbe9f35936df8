// Added-token table and matching (see added_vocabulary.hpp); mirrors HF tokenizers'
// AddedVocabulary::find_matches, including lstrip/rstrip/single_word.
#include "tokenizer/added_vocabulary.hpp"

#include <algorithm>
#include <cctype>

#include "core/check.hpp"
#include "core/log.hpp"
#include "tokenizer/bpe_model.hpp"
#include "tokenizer/unicode_text.hpp"

namespace qf::tokenizer {
namespace {

// Rust char::is_alphanumeric || '_' for the byte-level cases that matter: ASCII word characters
// and any non-ASCII character that is not whitespace (an approximation: non-ASCII punctuation
// counts as a word character here).
bool is_word_char(char32_t cp) {
  if (cp < 0x80) return std::isalnum(static_cast<int>(cp)) || cp == '_';
  return !is_unicode_whitespace(cp);
}

// Start of the code point that ends at text[end).
size_t previous_char_start(std::string_view text, size_t end) {
  size_t p = end - 1;
  while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
  return p;
}

}  // namespace

void AddedVocabulary::Trie::insert(const std::string& key, int token) {
  int node = 0;
  for (const char c : key) {
    const auto byte = static_cast<unsigned char>(c);
    auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, -1));
    if (it == children.end() || it->first != byte) {
      const int child = static_cast<int>(nodes.size());
      it = children.insert(it, {byte, child});
      nodes.emplace_back();  // may reallocate: `children` is not used after this
      node = child;
    } else {
      node = it->second;
    }
  }
  nodes[node].token = token;
}

int AddedVocabulary::Trie::longest_at(std::string_view text, size_t pos, size_t* length) const {
  int node = 0, best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const auto& children = nodes[node].children;
    const auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, -1));
    if (it == children.end() || it->first != byte) break;
    node = it->second;
    if (nodes[node].token >= 0) {
      best = nodes[node].token;
      *length = i + 1 - pos;
    }
  }
  return best;
}

AddedVocabulary AddedVocabulary::from_json(const nlohmann::json& added_tokens,
                                           const std::string& label, const BpeModel& model) {
  AddedVocabulary vocab;
  if (added_tokens.is_null()) return vocab;
  QF_CHECK(added_tokens.is_array(), label + ": \"added_tokens\" must be an array");
  const auto n_model = static_cast<int64_t>(model.n_vocab());
  int64_t max_added = -1;
  for (size_t i = 0; i < added_tokens.size(); ++i) {
    const auto& entry = added_tokens[i];
    const std::string where = label + " added_tokens[" + std::to_string(i) + "]";
    QF_CHECK(entry.is_object() && entry.contains("content") && entry["content"].is_string(),
             where + ": needs a string \"content\"");
    AddedToken token;
    token.content = entry["content"].get<std::string>();
    QF_CHECK(!token.content.empty(), where + ": empty content");
    QF_CHECK(find_invalid_utf8(token.content) == std::string_view::npos,
             where + ": content is not valid UTF-8");
    if (vocab.token_to_id(token.content)) continue;  // HF: already added, same id
    // HF AddedVocabulary::add_tokens: the model's id, else the next id after the model/added ones.
    if (const auto in_model = model.token_to_id(token.content)) {
      token.id = *in_model;
    } else {
      token.id = (max_added >= n_model || n_model == 0) ? max_added + 1 : n_model;
    }
    max_added = std::max(max_added, token.id);
    if (entry.contains("id") && entry["id"].is_number_integer() &&
        entry["id"].get<int64_t>() != token.id) {
      log_warn(where, ": '", token.content, "' has id ", entry["id"].get<int64_t>(),
               " in the file but HF tokenizers gives it ", token.id, "; using ", token.id);
    }
    token.special = entry.value("special", false);
    token.lstrip = entry.value("lstrip", false);
    token.rstrip = entry.value("rstrip", false);
    token.single_word = entry.value("single_word", false);
    token.normalized = entry.contains("normalized") && entry["normalized"].is_boolean()
                           ? entry["normalized"].get<bool>()
                           : !token.special;
    const int index = static_cast<int>(vocab.tokens_.size());
    (token.normalized ? vocab.normalized_trie_ : vocab.raw_trie_).insert(token.content, index);
    vocab.tokens_.push_back(std::move(token));
  }
  return vocab;
}

std::optional<int64_t> AddedVocabulary::token_to_id(const std::string& content) const {
  for (const AddedToken& t : tokens_) {
    if (t.content == content) return t.id;
  }
  return std::nullopt;
}

int64_t AddedVocabulary::max_id() const {
  int64_t max_id = -1;
  for (const AddedToken& t : tokens_) max_id = std::max(max_id, t.id);
  return max_id;
}

void AddedVocabulary::split_pass(const Trie& trie, std::string_view text,
                                 std::vector<TextSegment>& out) const {
  // Non-overlapping leftmost-longest matches on the text as given.
  struct Found {
    size_t begin, end;
    int token;
  };
  std::vector<Found> found;
  for (size_t pos = 0; pos < text.size();) {
    size_t length = 0;
    const int token = trie.nodes.size() > 1 ? trie.longest_at(text, pos, &length) : -1;
    if (token >= 0) {
      found.push_back({pos, pos + length, token});
      pos += length;
    } else {
      ++pos;
    }
  }
  size_t start_offset = 0;
  for (const Found& f : found) {
    const AddedToken& token = tokens_[f.token];
    size_t begin = f.begin, end = f.end;
    if (token.single_word) {
      const bool word_before =
          begin > 0 && is_word_char(decode_utf8_at(text, previous_char_start(text, begin)));
      const bool word_after = end < text.size() && is_word_char(decode_utf8_at(text, end));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      size_t b = begin;
      while (b > 0) {
        const size_t p = previous_char_start(text, b);
        if (!is_unicode_whitespace(decode_utf8_at(text, p))) break;
        b = p;
      }
      begin = std::max(b, start_offset);
    }
    if (token.rstrip) {
      while (end < text.size() && is_unicode_whitespace(decode_utf8_at(text, end))) {
        end += utf8_sequence_length(static_cast<unsigned char>(text[end]));
      }
    }
    if (begin < start_offset) continue;  // swallowed by the previous token's rstrip
    if (start_offset < begin) out.push_back({text.substr(start_offset, begin - start_offset), -1});
    out.push_back({text.substr(begin, end - begin), token.id});
    start_offset = end;
  }
  if (start_offset < text.size()) out.push_back({text.substr(start_offset), -1});
}

std::vector<TextSegment> AddedVocabulary::split(std::string_view text) const {
  std::vector<TextSegment> first, out;
  split_pass(raw_trie_, text, first);
  for (const TextSegment& segment : first) {
    if (segment.id >= 0) {
      out.push_back(segment);
    } else {
      split_pass(normalized_trie_, segment.text, out);
    }
  }
  return out;
}

}  // namespace qf::tokenizer
