// The calibration token set: loading it from a file (safetensors or JSONL), the embedded
// deterministic synthetic set, and the split of its samples over ranks. Owns: file formats,
// token validation, the split rule. Does not own: tokenization (ids only) or running the model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"

namespace qf::pipeline {

// n_samples sequences of seq_len token ids, sample-major: token (s, t) is
// token_ids[s * seq_len + t]. Every rank holds the whole set (it is small: ids only) and
// runs its own contiguous share of the samples (samples_of_rank).
struct CalibrationSet {
  int n_samples = 0;
  int seq_len = 0;
  std::vector<int64_t> token_ids;  // [n_samples * seq_len], each in [0, vocab)
  std::string source;              // "synthetic(seed=0)" or the file path, for logs/provenance

  int64_t n_tokens() const { return int64_t{n_samples} * seq_len; }
  // The ids of samples [begin, end), sample-major.
  std::vector<int64_t> tokens_of(int begin, int end) const;
};

// Reads `samples` samples of `seq_len` tokens from `path` (samples <= 0: every sample the file
// holds). Formats, picked by extension (.safetensors, else JSONL):
//   safetensors  a tensor `input_ids`, I32 or I64: 2-D [n, L] (one sample per row, L >= seq_len,
//                rows cut to their first seq_len ids) or 1-D [n_tokens] (a token stream cut into
//                consecutive windows of seq_len; a trailing partial window is dropped).
//   JSONL        one sample per non-blank line: a JSON array of ids, or an object whose
//                "input_ids" is such an array; a line needs >= seq_len ids (cut to seq_len).
// Samples are taken in file order. Throws qf::Error naming the file (and the line for JSONL) for:
// unreadable files, bad JSON, non-integer ids, ids outside [0, vocab), short samples, fewer
// samples than asked for.
CalibrationSet load_calibration_set(const std::string& path, int samples, int seq_len,
                                    int64_t vocab);

// The embedded default set (make-tiny models and tests): a pure function of (vocab, samples,
// seq_len, seed) on every platform. Ids follow a Zipf law (p(k) ~ 1/(k+1)) over a seeded
// permutation of the vocabulary, so frequent ids are spread over the id range and hash-routed
// layers reach most experts; position 0 of every sample is bos_token_id when the config has one.
// Integer PRNG (splitmix64) and exactly-rounded double arithmetic only: no std:: distributions.
CalibrationSet synthetic_calibration_set(const model::ModelConfig& config, int samples, int seq_len,
                                         uint64_t seed);

// FNV-1a over (n_samples, seq_len, ids): identifies the set in provenance and logs.
uint64_t calibration_fingerprint(const CalibrationSet& set);

// The samples [begin, end) rank `rank` of `world` runs: contiguous, in rank order, sizes differ
// by at most one (the first n_samples % world ranks get one more). Ranks past n_samples get an
// empty range; they still take part in every collective.
struct SampleRange {
  int begin = 0;
  int end = 0;
  int n_samples() const { return end - begin; }
};
SampleRange samples_of_rank(int n_samples, int rank, int world);

}  // namespace qf::pipeline
