// tokenizer.json loading, the normalizer/post-processor subset, and encode (see tokenizer.hpp).
#include "tokenizer/tokenizer.hpp"

#include "core/check.hpp"
#include "formats/atomic_file.hpp"
#include "tokenizer/unicode_text.hpp"

namespace qf::tokenizer {

const char* const kDeepSeekBosToken =
    "<\xEF\xBD\x9C"
    "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";

namespace {

// Only identity normalizers are supported: null, or Sequences that are (recursively) empty.
void check_identity_normalizer(const nlohmann::json& normalizer, const std::string& label) {
  if (normalizer.is_null()) return;
  QF_CHECK(normalizer.is_object() && normalizer.value("type", std::string()) == "Sequence" &&
               normalizer.contains("normalizers") && normalizer["normalizers"].is_array(),
           label + ": normalizer", normalizer.dump().substr(0, 120),
           "is not supported (only none or an empty Sequence, as in DeepSeek tokenizers)");
  for (const auto& inner : normalizer["normalizers"]) check_identity_normalizer(inner, label);
}

// Resolves a TemplateProcessing special-token name to its ids through "special_tokens".
std::vector<int64_t> special_ids(const nlohmann::json& processor, const std::string& name,
                                 const std::string& label) {
  const auto& table = processor.value("special_tokens", nlohmann::json::object());
  QF_CHECK(table.contains(name) && table[name].contains("ids") && table[name]["ids"].is_array(),
           label + ": post_processor special token", "'" + name + "'",
           "has no entry with \"ids\" in \"special_tokens\"");
  std::vector<int64_t> ids;
  for (const auto& id : table[name]["ids"]) {
    QF_CHECK(id.is_number_integer(), label + ": post_processor ids of", "'" + name + "'",
             "must be integers");
    ids.push_back(id.get<int64_t>());
  }
  return ids;
}

// Collects the specials around $A in a post-processor's "single" template.
void parse_post_processor(const nlohmann::json& processor, const std::string& label,
                          std::vector<int64_t>& prefix, std::vector<int64_t>& suffix) {
  if (processor.is_null()) return;
  QF_CHECK(processor.is_object() && processor.contains("type") && processor["type"].is_string(),
           label + ": post_processor must be an object with a \"type\"");
  const std::string type = processor["type"].get<std::string>();
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    QF_CHECK(processor.contains("processors") && processor["processors"].is_array(),
             label + ": Sequence post_processor without \"processors\"");
    for (const auto& inner : processor["processors"]) {
      parse_post_processor(inner, label, prefix, suffix);
    }
    return;
  }
  QF_CHECK(type == "TemplateProcessing", label + ": post_processor type", "'" + type + "'",
           "is not supported (supported: TemplateProcessing, ByteLevel, Sequence)");
  QF_CHECK(processor.contains("single") && processor["single"].is_array(),
           label + ": TemplateProcessing without a \"single\" template");
  bool seen_sequence = false;
  for (const auto& piece : processor["single"]) {
    if (piece.contains("Sequence")) {
      seen_sequence = true;
    } else if (piece.contains("SpecialToken")) {
      const std::string name = piece["SpecialToken"].value("id", std::string());
      const auto ids = special_ids(processor, name, label);
      auto& target = seen_sequence ? suffix : prefix;
      target.insert(target.end(), ids.begin(), ids.end());
    } else {
      QF_FAIL(label + ": unknown TemplateProcessing piece", piece.dump());
    }
  }
  QF_CHECK(seen_sequence, label + ": TemplateProcessing \"single\" has no $A sequence");
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& path) {
  return from_json(formats::read_json_file(path), path);
}

Tokenizer Tokenizer::from_json(const nlohmann::json& config, const std::string& label) {
  QF_CHECK(config.is_object(), label + ": a tokenizer.json must hold a JSON object");
  QF_CHECK(config.contains("model"), label + ": no \"model\" (is this a tokenizer.json?)");
  Tokenizer tok;
  check_identity_normalizer(config.value("normalizer", nlohmann::json()), label);
  tok.model_ = BpeModel::from_json(config["model"], label);
  tok.added_ =
      AddedVocabulary::from_json(config.value("added_tokens", nlohmann::json()), label, tok.model_);
  tok.pre_tokenizer_ =
      PreTokenizer::from_json(config.value("pre_tokenizer", nlohmann::json()), label);
  parse_post_processor(config.value("post_processor", nlohmann::json()), label, tok.prefix_ids_,
                       tok.suffix_ids_);
  return tok;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  const size_t bad = find_invalid_utf8(text);
  QF_CHECK(bad == std::string_view::npos, "tokenizer: text is not valid UTF-8 at byte", bad);
  return pre_tokenizer_.split(text);
}

std::vector<int64_t> Tokenizer::encode(std::string_view text) const {
  const size_t bad = find_invalid_utf8(text);
  QF_CHECK(bad == std::string_view::npos, "tokenizer: text is not valid UTF-8 at byte", bad);
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 1);
  for (const TextSegment& segment : added_.split(text)) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      continue;
    }
    for (const std::string& piece : pre_tokenizer_.split(segment.text)) {
      model_.encode_piece(piece, ids);
    }
  }
  return ids;
}

std::vector<int64_t> Tokenizer::encode_with_special_tokens(std::string_view text) const {
  std::vector<int64_t> ids = prefix_ids_;
  const std::vector<int64_t> body = encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

std::optional<int64_t> Tokenizer::bos_id(const std::string& bos_token) const {
  if (prefix_ids_.size() == 1) return prefix_ids_[0];
  return added_.token_to_id(bos_token);
}

std::optional<int64_t> Tokenizer::token_to_id(const std::string& token) const {
  if (auto id = added_.token_to_id(token)) return id;
  return model_.token_to_id(token);
}

int64_t Tokenizer::vocab_size() const { return std::max(model_.max_id(), added_.max_id()) + 1; }

}  // namespace qf::tokenizer
