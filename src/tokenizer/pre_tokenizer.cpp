// Pre-tokenizer steps (see pre_tokenizer.hpp). The delimiter rules follow HF tokenizers'
// NormalizedString::split, so pieces (and therefore ids) match the Python package.
#include "tokenizer/pre_tokenizer.hpp"

#include "core/check.hpp"
#include "tokenizer/byte_level.hpp"

namespace qf::tokenizer {

const char* const kGpt2SplitPattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

namespace {

struct Span {
  size_t begin = 0;
  size_t end = 0;
  bool is_match = false;
};

SplitBehavior parse_behavior(const nlohmann::json& value, const std::string& label) {
  QF_CHECK(value.is_string(), label + ": Split \"behavior\" must be a string");
  const std::string name = value.get<std::string>();
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  QF_FAIL(label + ": unknown Split behavior", "'" + name + "'");
}

bool bool_field(const nlohmann::json& config, const char* key, bool fallback,
                const std::string& label) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  QF_CHECK(config[key].is_boolean(), label + ":", key, "must be true or false");
  return config[key].get<bool>();
}

// Matches and the gaps between them, covering `piece` (HF Pattern::find_matches).
std::vector<Span> matches_and_gaps(const Regex& regex, std::string_view piece, bool invert) {
  std::vector<Span> spans;
  size_t prev = 0;
  for (const MatchSpan& m : regex.find_all(piece)) {
    if (prev != m.begin) spans.push_back({prev, m.begin, invert});
    spans.push_back({m.begin, m.end, !invert});
    prev = m.end;
  }
  if (prev != piece.size()) spans.push_back({prev, piece.size(), invert});
  return spans;
}

// Applies the delimiter behaviour; returns the kept [begin, end) ranges.
std::vector<Span> apply_behavior(const std::vector<Span>& spans, SplitBehavior behavior) {
  std::vector<Span> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      return spans;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans) {
        if (!s.is_match) out.push_back(s);
      }
      return out;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back(*it);
        }
        previous_match = it->is_match;
      }
      return std::vector<Span>(out.rbegin(), out.rend());
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.is_match == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
  }
  return out;
}

}  // namespace

void PreTokenizer::add_json(const nlohmann::json& config, const std::string& label, bool last) {
  QF_CHECK(config.is_object() && config.contains("type") && config["type"].is_string(),
           label + ": pre_tokenizer entries must be objects with a \"type\"");
  const std::string type = config["type"].get<std::string>();
  if (type == "Sequence") {
    QF_CHECK(config.contains("pretokenizers") && config["pretokenizers"].is_array(),
             label + ": Sequence pre_tokenizer without a \"pretokenizers\" array");
    const auto& list = config["pretokenizers"];
    for (size_t i = 0; i < list.size(); ++i) {
      add_json(list[i], label + " pre_tokenizer[" + std::to_string(i) + "]",
               last && i + 1 == list.size());
    }
    return;
  }
  QF_CHECK(!byte_level_, label + ": a", type,
           "step after ByteLevel is not supported (ByteLevel must come last)");
  if (type == "Split") {
    QF_CHECK(config.contains("pattern") && config["pattern"].is_object(),
             label + ": Split without a \"pattern\" object");
    const auto& pattern = config["pattern"];
    Step step;
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      step.regex = std::make_shared<Regex>(pattern["Regex"].get<std::string>(), false, label);
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      step.regex = std::make_shared<Regex>(pattern["String"].get<std::string>(), true, label);
    } else {
      QF_FAIL(label + ": Split pattern must be {\"Regex\": ...} or {\"String\": ...}");
    }
    step.behavior = parse_behavior(config.value("behavior", nlohmann::json("Isolated")), label);
    step.invert = bool_field(config, "invert", false, label);
    steps_.push_back(std::move(step));
  } else if (type == "Digits") {
    // HF splits on char::is_numeric one character at a time: Isolated or Contiguous.
    Step step;
    step.regex = std::make_shared<Regex>("\\p{N}", false, label);
    step.behavior = bool_field(config, "individual_digits", false, label)
                        ? SplitBehavior::kIsolated
                        : SplitBehavior::kContiguous;
    steps_.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    QF_CHECK(last, label + ": ByteLevel must be the last pre-tokenizer step");
    if (bool_field(config, "add_prefix_space", false, label)) {
      Step step;
      step.kind = Step::Kind::kPrefixSpace;
      steps_.push_back(std::move(step));
    }
    if (bool_field(config, "use_regex", true, label)) {
      Step step;
      step.regex = std::make_shared<Regex>(kGpt2SplitPattern, false, label);
      steps_.push_back(std::move(step));
    }
    byte_level_ = true;
  } else {
    QF_FAIL(label + ": pre_tokenizer type", "'" + type + "'",
            "is not supported (supported: Sequence, Split, Digits, ByteLevel)");
  }
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& config, const std::string& label) {
  PreTokenizer pre;
  if (!config.is_null()) pre.add_json(config, label, true);
  return pre;
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string> pieces;
  if (!text.empty()) pieces.emplace_back(text);
  std::vector<std::string> next;
  for (const Step& step : steps_) {
    next.clear();
    for (std::string& piece : pieces) {
      if (step.kind == Step::Kind::kPrefixSpace) {
        next.push_back(piece[0] == ' ' ? std::move(piece) : " " + piece);
        continue;
      }
      const auto spans =
          apply_behavior(matches_and_gaps(*step.regex, piece, step.invert), step.behavior);
      for (const Span& s : spans) {
        if (s.end > s.begin) next.emplace_back(piece, s.begin, s.end - s.begin);
      }
    }
    pieces.swap(next);
  }
  if (byte_level_) {
    for (std::string& piece : pieces) piece = byte_level_encode(piece);
  }
  return pieces;
}

}  // namespace qf::tokenizer
