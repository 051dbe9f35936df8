// JSONL documents -> mixed, packed token samples -> safetensors (see text_calibration.hpp).
#include "tokenizer/text_calibration.hpp"

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.hpp"
#include "core/log.hpp"
#include "formats/atomic_file.hpp"
#include "formats/safetensors_writer.hpp"

namespace qf::tokenizer {
namespace {

// Streams the documents of one JSONL file.
class JsonlDocuments {
 public:
  JsonlDocuments(std::string path, std::string field)
      : path_(std::move(path)), field_(std::move(field)), in_(path_) {
    QF_CHECK(in_.good(), path_ + ": cannot open the text dataset");
  }
  // Next document text; false at the end of the file.
  bool next(std::string& text) {
    std::string line;
    while (std::getline(in_, line)) {
      ++line_no_;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json value = formats::parse_json_strict(line, where());
      if (value.is_object()) {
        QF_CHECK(value.contains(field_),
                 where() + ": no field \"" + field_ + "\" (choose the text field with --field)");
        value = value[field_];
      }
      QF_CHECK(value.is_string(), where() + ": expected a string document, got",
               std::string(value.type_name()));
      text = value.get<std::string>();
      return true;
    }
    QF_CHECK(!in_.bad(), path_ + ": read error after line", line_no_);
    return false;
  }
  std::string where() const { return path_ + ":" + std::to_string(line_no_); }

 private:
  std::string path_;
  std::string field_;
  std::ifstream in_;
  int64_t line_no_ = 0;
};

// Reads one source until it has `wanted` samples (-1: all); returns them sample-major.
std::vector<int64_t> read_source(const Tokenizer& tok, const TextCalibrationOptions& options,
                                 const std::string& path, int64_t wanted, SourceStats& stats) {
  const size_t seq_len = static_cast<size_t>(options.seq_len);
  JsonlDocuments documents(path, options.field);
  std::vector<int64_t> samples;
  std::vector<int64_t> pending;  // kConcat: tokens not yet in a window
  std::string text;
  while ((wanted < 0 || stats.n_samples < wanted) && documents.next(text)) {
    if (text.empty()) continue;
    std::vector<int64_t> ids;
    if (options.bos_id) ids.push_back(*options.bos_id);
    try {
      const std::vector<int64_t> body = tok.encode(text);
      ids.insert(ids.end(), body.begin(), body.end());
    } catch (const Error& e) {
      QF_FAIL(documents.where() + ":", e.message());
    }
    ++stats.n_documents;
    stats.n_tokens += static_cast<int64_t>(ids.size());
    if (options.packing == Packing::kDocument) {
      if (ids.size() < seq_len) {
        ++stats.n_short_documents;
        continue;
      }
      samples.insert(samples.end(), ids.begin(), ids.begin() + seq_len);
      ++stats.n_samples;
      continue;
    }
    pending.insert(pending.end(), ids.begin(), ids.end());
    size_t used = 0;
    while (pending.size() - used >= seq_len && (wanted < 0 || stats.n_samples < wanted)) {
      samples.insert(samples.end(), pending.begin() + used, pending.begin() + used + seq_len);
      used += seq_len;
      ++stats.n_samples;
    }
    pending.erase(pending.begin(), pending.begin() + used);
  }
  if (wanted >= 0 && stats.n_samples < wanted) {
    std::string detail = std::to_string(stats.n_documents) + " documents, " +
                         std::to_string(stats.n_tokens) + " tokens";
    if (options.packing == Packing::kDocument) {
      detail += ", " + std::to_string(stats.n_short_documents) + " shorter than --seq-len";
    }
    QF_FAIL(path + ": yields only", stats.n_samples, "samples of", seq_len,
            "tokens (" + detail + ", packing",
            std::string(packings().name(options.packing)) + ") but", wanted, "were asked for");
  }
  QF_CHECK(stats.n_samples > 0, path + ": yields no sample of", seq_len, "tokens (",
           stats.n_documents, "documents,", stats.n_tokens, "tokens)");
  return samples;
}

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

TextSource parse_text_source(const std::string& spec) {
  TextSource source;
  source.path = spec;
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos && all_digits(spec.substr(colon + 1))) {
    source.path = spec.substr(0, colon);
    const std::string count = spec.substr(colon + 1);
    QF_CHECK(count.size() <= 12, "--text", "'" + spec + "':", "sample count too large");
    source.n_samples = std::stoll(count);
    QF_CHECK(source.n_samples >= 1, "--text", "'" + spec + "':", "sample count must be >= 1");
  }
  QF_CHECK(!source.path.empty(), "--text", "'" + spec + "':", "empty path");
  return source;
}

const EnumTable<Packing>& packings() {
  static const EnumTable<Packing> table(
      "--packing", {{"concat", Packing::kConcat,
                     "documents joined (BOS before each) and cut into seq-len windows"},
                    {"document", Packing::kDocument,
                     "one document per sample, cut to seq-len, shorter ones skipped"}});
  return table;
}

std::vector<int64_t> resolve_sample_counts(const std::vector<TextSource>& sources,
                                           int64_t samples) {
  QF_CHECK(!sources.empty(), "no --text dataset given");
  QF_CHECK(samples >= 0, "--samples must be >= 1, got", samples);
  std::vector<int64_t> counts;
  int64_t explicit_total = 0, n_open = 0;
  for (const TextSource& s : sources) {
    counts.push_back(s.n_samples);
    if (s.n_samples > 0) {
      explicit_total += s.n_samples;
    } else {
      ++n_open;
    }
  }
  if (samples == 0) return counts;  // open sources take everything
  if (n_open == 0) {
    QF_CHECK(explicit_total == samples, "the --text counts add up to", explicit_total,
             "samples but --samples is", samples);
    return counts;
  }
  const int64_t left = samples - explicit_total;
  QF_CHECK(left >= n_open, "--samples", samples, "leaves", left, "samples for the", n_open,
           "--text datasets without a count (need >= 1 each)");
  int64_t k = 0;
  for (int64_t& c : counts) {
    if (c > 0) continue;
    c = left / n_open + (k < left % n_open ? 1 : 0);
    ++k;
  }
  return counts;
}

std::vector<int> interleave_sources(const std::vector<int64_t>& counts) {
  std::vector<int64_t> taken(counts.size(), 0);
  int64_t total = 0;
  for (const int64_t c : counts) {
    QF_CHECK(c >= 0, "interleave_sources: negative count", c);
    total += c;
  }
  std::vector<int> order;
  order.reserve(static_cast<size_t>(total));
  for (int64_t k = 0; k < total; ++k) {
    int best = -1;
    for (size_t d = 0; d < counts.size(); ++d) {
      if (taken[d] >= counts[d]) continue;
      // (taken_d + 1/2) / count_d < (taken_b + 1/2) / count_b, in exact integer arithmetic.
      if (best < 0 || (2 * taken[d] + 1) * counts[best] < (2 * taken[best] + 1) * counts[d]) {
        best = static_cast<int>(d);
      }
    }
    order.push_back(best);
    ++taken[best];
  }
  return order;
}

TextCalibrationSet build_text_calibration(const Tokenizer& tok,
                                          const TextCalibrationOptions& options) {
  QF_CHECK(options.seq_len >= 1, "--seq-len must be >= 1, got", options.seq_len);
  const std::vector<int64_t> wanted = resolve_sample_counts(options.sources, options.samples);
  TextCalibrationSet set;
  set.seq_len = options.seq_len;
  std::vector<std::vector<int64_t>> per_source;
  std::vector<int64_t> counts;
  for (size_t d = 0; d < options.sources.size(); ++d) {
    SourceStats stats;
    stats.path = options.sources[d].path;
    per_source.push_back(read_source(tok, options, stats.path, wanted[d], stats));
    log_info("calib-data: ", stats.path, ": ", stats.n_samples, " samples from ", stats.n_documents,
             " documents (", stats.n_tokens, " tokens)",
             stats.n_short_documents ? ", " + std::to_string(stats.n_short_documents) +
                                           " documents shorter than --seq-len skipped"
                                     : std::string());
    counts.push_back(stats.n_samples);
    set.sources.push_back(stats);
  }
  const std::vector<int> order = interleave_sources(counts);
  QF_CHECK(order.size() <= static_cast<size_t>(INT32_MAX), "calib-data: too many samples",
           order.size());
  set.n_samples = static_cast<int>(order.size());
  set.token_ids.reserve(order.size() * static_cast<size_t>(set.seq_len));
  std::vector<size_t> next(per_source.size(), 0);
  for (const int d : order) {
    const auto begin = per_source[d].begin() + static_cast<ptrdiff_t>(next[d]);
    set.token_ids.insert(set.token_ids.end(), begin, begin + set.seq_len);
    next[d] += static_cast<size_t>(set.seq_len);
  }
  return set;
}

void write_calibration_tokens(const TextCalibrationSet& set, const std::string& path,
                              const std::map<std::string, std::string>& metadata) {
  QF_CHECK(set.n_samples >= 1 && set.seq_len >= 1 &&
               set.token_ids.size() == static_cast<size_t>(set.n_samples) * set.seq_len,
           path + ": calibration set of", set.n_samples, "x", set.seq_len, "holds",
           set.token_ids.size(), "ids");
  formats::TensorSpec spec;
  spec.name = "input_ids";
  spec.dtype = DType::kI64;
  spec.shape = {set.n_samples, set.seq_len};
  formats::SafetensorsWriter writer(path, {spec}, metadata);
  // Little-endian I64, as the reader expects (the host is little-endian: x86-64 / aarch64).
  writer.append(set.token_ids.data(), set.token_ids.size() * sizeof(int64_t));
  writer.commit();
}

}  // namespace qf::tokenizer
