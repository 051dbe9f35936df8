// BPE vocabulary, merges and the merge loop (see bpe_model.hpp).
#include "tokenizer/bpe_model.hpp"

#include <cstdio>
#include <queue>

#include "core/check.hpp"
#include "tokenizer/unicode_text.hpp"

namespace qf::tokenizer {
namespace {

// "a b" or ["a", "b"] -> (a, b).
std::pair<std::string, std::string> parse_merge(const nlohmann::json& entry,
                                                const std::string& where) {
  if (entry.is_string()) {
    const std::string text = entry.get<std::string>();
    const size_t space = text.find(' ');
    QF_CHECK(space != std::string::npos && space > 0 && space + 1 < text.size() &&
                 text.find(' ', space + 1) == std::string::npos,
             where + ": merge", "'" + text + "'", "is not two tokens separated by one space");
    return {text.substr(0, space), text.substr(space + 1)};
  }
  QF_CHECK(entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string(),
           where + ": a merge must be \"a b\" or [\"a\", \"b\"], got", entry.dump());
  return {entry[0].get<std::string>(), entry[1].get<std::string>()};
}

struct Symbol {
  int32_t id = 0;
  int prev = -1;
  int next = -1;
  bool alive = true;
};

struct Candidate {
  int32_t rank = 0;
  int pos = 0;  // index of the left symbol
  int32_t new_id = 0;
  // priority_queue is a max-heap: "less" means larger (rank, pos), so the top is the lowest rank,
  // leftmost first, as HF's Merge ordering.
  bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

BpeModel BpeModel::from_json(const nlohmann::json& model, const std::string& label) {
  QF_CHECK(model.is_object(), label + ": \"model\" must be an object");
  const std::string type = model.value("type", std::string("BPE"));
  QF_CHECK(type == "BPE", label + ": model type", "'" + type + "'", "is not supported (only BPE)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    QF_CHECK(!model.contains(key) || model[key].is_null() ||
                 (model[key].is_string() && model[key].get<std::string>().empty()),
             label + ": BPE option", key, "is not supported");
  }
  QF_CHECK(!model.contains("dropout") || model["dropout"].is_null(),
           label + ": BPE dropout is not supported (it makes ids random)");
  QF_CHECK(model.contains("vocab") && model["vocab"].is_object(),
           label + ": BPE model without a \"vocab\" object");
  QF_CHECK(model.contains("merges") && model["merges"].is_array(),
           label + ": BPE model without a \"merges\" array");

  BpeModel bpe;
  bpe.vocab_.reserve(model["vocab"].size());
  for (const auto& [token, id] : model["vocab"].items()) {
    QF_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() <= INT32_MAX,
             label + ": vocab entry", "'" + token + "'", "has id", id.dump(),
             "(expected an integer >= 0)");
    bpe.vocab_.emplace(token, id.get<int32_t>());
    bpe.max_id_ = std::max<int64_t>(bpe.max_id_, id.get<int64_t>());
  }
  const auto& merges = model["merges"];
  bpe.merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string where = label + " merges[" + std::to_string(rank) + "]";
    const auto [left, right] = parse_merge(merges[rank], where);
    const auto l = bpe.vocab_.find(left), r = bpe.vocab_.find(right);
    const auto merged = bpe.vocab_.find(left + right);
    QF_CHECK(l != bpe.vocab_.end() && r != bpe.vocab_.end(), where + ": token",
             "'" + (l == bpe.vocab_.end() ? left : right) + "'", "is not in the vocab");
    QF_CHECK(merged != bpe.vocab_.end(), where + ": merged token", "'" + left + right + "'",
             "is not in the vocab");
    // A repeated pair takes its last rank: HF collects the merges into a HashMap in order.
    bpe.merges_[pair_key(l->second, r->second)] = Merge{static_cast<int32_t>(rank), merged->second};
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    const std::string unk = model["unk_token"].get<std::string>();
    const auto it = bpe.vocab_.find(unk);
    QF_CHECK(it != bpe.vocab_.end(), label + ": unk_token", "'" + unk + "'", "is not in the vocab");
    bpe.unk_id_ = it->second;
  }
  bpe.byte_fallback_ = model.value("byte_fallback", false);
  bpe.fuse_unk_ = model.value("fuse_unk", false);
  bpe.ignore_merges_ = model.value("ignore_merges", false);
  return bpe;
}

std::optional<int64_t> BpeModel::token_to_id(const std::string& token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int64_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    const auto it = vocab_.find(std::string(piece));
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // One symbol per character.
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  const auto push = [&symbols](int32_t id) {
    Symbol s;
    s.id = id;
    s.prev = static_cast<int>(symbols.size()) - 1;
    symbols.push_back(s);
  };
  bool last_was_unk = false;
  for (size_t pos = 0; pos < piece.size();) {
    const size_t len =
        std::min(utf8_sequence_length(static_cast<unsigned char>(piece[pos])), piece.size() - pos);
    const std::string ch(piece.substr(pos, len));
    pos += len;
    const auto it = vocab_.find(ch);
    if (it != vocab_.end()) {
      push(it->second);
      last_was_unk = false;
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> bytes;
      for (const char c : ch) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", static_cast<unsigned char>(c));
        const auto b = vocab_.find(name);
        if (b == vocab_.end()) break;
        bytes.push_back(b->second);
      }
      if (bytes.size() == ch.size()) {
        for (const int32_t id : bytes) push(id);
        last_was_unk = false;
        continue;
      }
    }
    if (unk_id_) {
      if (!(fuse_unk_ && last_was_unk)) push(*unk_id_);
      last_was_unk = true;
    }
  }
  for (size_t i = 0; i + 1 < symbols.size(); ++i) symbols[i].next = static_cast<int>(i + 1);

  std::priority_queue<Candidate> queue;
  const auto consider = [&](int left) {
    if (left < 0 || symbols[left].next < 0) return;
    const auto it = merges_.find(pair_key(symbols[left].id, symbols[symbols[left].next].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) consider(static_cast<int>(i));
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    // Stale entry: one side changed since it was queued.
    const auto it = merges_.find(pair_key(left.id, symbols[left.next].id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    Symbol& right = symbols[left.next];
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    consider(left.prev);
    consider(top.pos);
  }
  for (const Symbol& s : symbols) {
    if (s.alive) out.push_back(s.id);
  }
}

}  // namespace qf::tokenizer
