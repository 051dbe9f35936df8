// Calibration token sets: safetensors / JSONL readers, the synthetic Zipf set, the rank split.
#include "calibrate/calibration_data.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.hpp"
#include "core/strings.hpp"
#include "formats/atomic_file.hpp"
#include "formats/safetensors_reader.hpp"

namespace qf::pipeline {
namespace {

// Checks one id and returns it; `where` names the file and sample for the message.
int64_t checked_id(int64_t id, int64_t vocab, const std::string& where) {
  QF_CHECK(id >= 0 && id < vocab, where + ": token id", id, "outside the vocabulary [0,", vocab,
           ")");
  return id;
}

// Appends sample ids[0, seq_len) to the set.
void add_sample(CalibrationSet& set, const int64_t* ids, int64_t vocab, const std::string& where) {
  for (int t = 0; t < set.seq_len; ++t) set.token_ids.push_back(checked_id(ids[t], vocab, where));
  ++set.n_samples;
}

void check_enough(const CalibrationSet& set, int samples, int64_t available,
                  const std::string& path, const std::string& unit) {
  QF_CHECK(set.n_samples > 0, path + ": no sample of", set.seq_len, "tokens in the file");
  QF_CHECK(samples <= 0 || set.n_samples == samples, path + ": holds", available, unit,
           "but --samples asks for", samples);
}

// I32/I64 little-endian tensor data as int64 values.
std::vector<int64_t> read_int_tensor(const formats::SafetensorsReader& file,
                                     const formats::TensorInfo& info) {
  QF_CHECK(info.dtype == DType::kI64 || info.dtype == DType::kI32,
           file.path() + ": input_ids has dtype", dtype_name(info.dtype), "(expected I32 or I64)");
  const std::vector<uint8_t> bytes = file.read_tensor(info);
  std::vector<int64_t> ids(info.n_elems());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (info.dtype == DType::kI64) {
      std::memcpy(&ids[i], bytes.data() + 8 * i, 8);
    } else {
      int32_t v = 0;
      std::memcpy(&v, bytes.data() + 4 * i, 4);
      ids[i] = v;
    }
  }
  return ids;
}

CalibrationSet load_safetensors(const std::string& path, int samples, int seq_len, int64_t vocab) {
  const formats::SafetensorsReader file(path);
  const formats::TensorInfo* info = file.find("input_ids");
  QF_CHECK(info != nullptr, path + ": no tensor named input_ids");
  QF_CHECK(info->shape.size() == 1 || info->shape.size() == 2,
           path + ": input_ids must be 1-D (token stream) or 2-D [samples, len], has",
           info->shape.size(), "dims");
  const std::vector<int64_t> ids = read_int_tensor(file, *info);
  CalibrationSet set;
  set.seq_len = seq_len;
  set.source = path;
  int64_t available = 0;
  if (info->shape.size() == 2) {
    const int64_t n_rows = info->shape[0], row_len = info->shape[1];
    QF_CHECK(row_len >= seq_len, path + ": input_ids rows hold", row_len,
             "tokens, shorter than --seq-len", seq_len);
    available = n_rows;
    for (int64_t r = 0; r < n_rows && (samples <= 0 || set.n_samples < samples); ++r) {
      add_sample(set, ids.data() + r * row_len, vocab, path + " sample " + std::to_string(r));
    }
  } else {
    available = static_cast<int64_t>(ids.size()) / seq_len;
    for (int64_t w = 0; w < available && (samples <= 0 || set.n_samples < samples); ++w) {
      add_sample(set, ids.data() + w * seq_len, vocab,
                 path + " token " + std::to_string(w * seq_len) + "+");
    }
  }
  check_enough(set, samples, available, path,
               info->shape.size() == 2 ? "samples" : "windows of --seq-len tokens");
  return set;
}

// The ids of one JSONL line: an array, or an object with an "input_ids" array.
std::vector<int64_t> parse_jsonl_line(const std::string& line, const std::string& where) {
  nlohmann::json value = formats::parse_json_strict(line, where);
  if (value.is_object()) {
    QF_CHECK(value.contains("input_ids"), where + ": object without \"input_ids\"");
    value = value["input_ids"];
  }
  QF_CHECK(value.is_array(), where + ": expected an array of token ids or {\"input_ids\": [...]}");
  std::vector<int64_t> ids;
  ids.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    QF_CHECK(value[i].is_number_integer(), where + ": element", i,
             "is not an integer:", value[i].dump());
    ids.push_back(value[i].get<int64_t>());
  }
  return ids;
}

CalibrationSet load_jsonl(const std::string& path, int samples, int seq_len, int64_t vocab) {
  std::ifstream in(path);
  QF_CHECK(in.good(), path + ": cannot open the calibration file");
  CalibrationSet set;
  set.seq_len = seq_len;
  set.source = path;
  std::string line;
  int64_t line_no = 0, available = 0;
  while ((samples <= 0 || set.n_samples < samples) && std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    const std::vector<int64_t> ids = parse_jsonl_line(line, where);
    QF_CHECK(static_cast<int64_t>(ids.size()) >= seq_len, where + ": sample has", ids.size(),
             "tokens, shorter than --seq-len", seq_len);
    add_sample(set, ids.data(), vocab, where);
    ++available;
  }
  QF_CHECK(!in.bad(), path + ": read error after line", line_no);
  check_enough(set, samples, available, path, "samples");
  return set;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) from the top 53 bits: exact on every IEEE platform.
double uniform01(uint64_t& state) {
  return static_cast<double>(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace

std::vector<int64_t> CalibrationSet::tokens_of(int begin, int end) const {
  QF_CHECK(0 <= begin && begin <= end && end <= n_samples, "calibration samples [", begin, ",", end,
           ") outside [0,", n_samples, ")");
  return std::vector<int64_t>(token_ids.begin() + int64_t{begin} * seq_len,
                              token_ids.begin() + int64_t{end} * seq_len);
}

CalibrationSet load_calibration_set(const std::string& path, int samples, int seq_len,
                                    int64_t vocab) {
  QF_CHECK(seq_len >= 1, "--seq-len must be >= 1, got", seq_len);
  QF_CHECK(vocab >= 1, "calibration: vocabulary size must be >= 1, got", vocab);
  if (ends_with(path, ".safetensors")) return load_safetensors(path, samples, seq_len, vocab);
  return load_jsonl(path, samples, seq_len, vocab);
}

CalibrationSet synthetic_calibration_set(const model::ModelConfig& config, int samples, int seq_len,
                                         uint64_t seed) {
  QF_CHECK(samples >= 1 && seq_len >= 1, "synthetic calibration set: --samples", samples,
           "and --seq-len", seq_len, "must be >= 1");
  const int64_t vocab = config.vocab_size;
  QF_CHECK(vocab >= 1, "synthetic calibration set: vocab_size", vocab);
  uint64_t state = seed ^ 0x5EED0CA11B7A7E5ull;
  // Rank k -> token id: a Fisher-Yates permutation of the vocabulary.
  std::vector<int64_t> id_of_rank(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) id_of_rank[i] = i;
  for (int64_t i = vocab - 1; i > 0; --i) {
    std::swap(id_of_rank[i], id_of_rank[splitmix64(state) % static_cast<uint64_t>(i + 1)]);
  }
  // Zipf (s = 1) CDF by sequential summation: divisions and additions only (exactly rounded).
  std::vector<double> cdf(static_cast<size_t>(vocab));
  double total = 0.0;
  for (int64_t k = 0; k < vocab; ++k) cdf[k] = (total += 1.0 / static_cast<double>(k + 1));
  int64_t bos = -1;
  if (config.raw.contains("bos_token_id") && config.raw["bos_token_id"].is_number_integer()) {
    bos = config.raw["bos_token_id"].get<int64_t>();
    if (bos < 0 || bos >= vocab) bos = -1;
  }

  CalibrationSet set;
  set.n_samples = samples;
  set.seq_len = seq_len;
  set.source = "synthetic(seed=" + std::to_string(seed) + ")";
  set.token_ids.reserve(static_cast<size_t>(set.n_tokens()));
  for (int s = 0; s < samples; ++s) {
    for (int t = 0; t < seq_len; ++t) {
      if (t == 0 && bos >= 0) {
        set.token_ids.push_back(bos);
        continue;
      }
      const double u = uniform01(state) * total;
      const auto it = std::upper_bound(cdf.begin(), cdf.end(), u);
      const int64_t rank = std::min<int64_t>(it - cdf.begin(), vocab - 1);
      set.token_ids.push_back(id_of_rank[rank]);
    }
  }
  return set;
}

uint64_t calibration_fingerprint(const CalibrationSet& set) {
  uint64_t h = 0xCBF29CE484222325ull;
  const auto mix = [&h](int64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= static_cast<uint64_t>(v >> (8 * i)) & 0xFFu;
      h *= 0x100000001B3ull;
    }
  };
  mix(set.n_samples);
  mix(set.seq_len);
  for (const int64_t id : set.token_ids) mix(id);
  return h;
}

SampleRange samples_of_rank(int n_samples, int rank, int world) {
  QF_CHECK(world >= 1 && rank >= 0 && rank < world && n_samples >= 0, "samples_of_rank: rank", rank,
           "of", world, "with", n_samples, "samples");
  const int base = n_samples / world, extra = n_samples % world;
  SampleRange range;
  range.begin = rank * base + std::min(rank, extra);
  range.end = range.begin + base + (rank < extra ? 1 : 0);
  return range;
}

}  // namespace qf::pipeline
