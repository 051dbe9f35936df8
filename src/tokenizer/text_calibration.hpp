// Calibration token sets from text: local JSONL datasets, mixed with per-dataset sample counts,
// tokenized (plain mode, BOS per document) and cut into seq_len samples, then written as the
// safetensors input_ids file pipeline/calibration_data.cpp loads. Owns: dataset specs, packing,
// mixing order, the output file. Does not own: tokenization (tokenizer.hpp).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/enum_table.hpp"
#include "tokenizer/tokenizer.hpp"

namespace qf::tokenizer {

// One --text argument: "path" or "path:N" (N samples from this file).
struct TextSource {
  std::string path;
  int64_t n_samples = -1;  // -1: not given
};
// Splits at the last ':' when what follows is a decimal count (so paths with ':' still work).
// Throws qf::Error for an empty path or a count < 1.
TextSource parse_text_source(const std::string& spec);

// How documents become samples.
//   kConcat    every document is [BOS] + ids; the documents of a file are concatenated and cut
//              into consecutive seq_len windows (a window may span documents; the tail that
//              does not fill a window is dropped). No token is wasted; the usual LLM setup.
//   kDocument  one document per sample: [BOS] + ids cut to seq_len; documents shorter than
//              seq_len are skipped (and counted).
enum class Packing { kConcat, kDocument };
const EnumTable<Packing>& packings();  // parse, name and --help of --packing

struct TextCalibrationOptions {
  std::vector<TextSource> sources;
  int seq_len = 0;
  int64_t samples = 0;            // --samples; 0: not given
  std::optional<int64_t> bos_id;  // prepended to every document when set
  std::string field = "text";     // JSONL field holding the document text
  Packing packing = Packing::kConcat;
};

// Samples per source: explicit counts are kept; sources without one share what --samples leaves
// (equal shares, the first ones get one more), or take every sample their file yields (-1) when
// --samples is not given. Throws qf::Error when the counts cannot add up to --samples.
std::vector<int64_t> resolve_sample_counts(const std::vector<TextSource>& sources, int64_t samples);

// The order in which sources fill the output: a smooth weighted round-robin (sample k comes
// from the source with the smallest (taken + 1/2) / count, lowest index on ties), so every
// prefix of the file mixes the datasets in proportion. Returns one source index per sample.
std::vector<int> interleave_sources(const std::vector<int64_t>& counts);

struct SourceStats {
  std::string path;
  int64_t n_samples = 0;
  int64_t n_documents = 0;        // documents read (the file is read only as far as needed)
  int64_t n_tokens = 0;           // tokens of those documents, BOS included
  int64_t n_short_documents = 0;  // kDocument: skipped for being shorter than seq_len
};

struct TextCalibrationSet {
  int n_samples = 0;
  int seq_len = 0;
  std::vector<int64_t> token_ids;  // [n_samples * seq_len], sample-major
  std::vector<SourceStats> sources;
};

// Reads each JSONL file (one document per non-blank line: an object whose `field` is a string,
// or a bare JSON string), tokenizes with tok.encode() and builds the set. Throws qf::Error naming
// the file and line for bad JSON, a missing/non-string field or invalid UTF-8, and naming the
// file when it yields fewer samples than asked for.
TextCalibrationSet build_text_calibration(const Tokenizer& tok,
                                          const TextCalibrationOptions& options);

// Writes `input_ids` I64 [n_samples, seq_len] to `path` atomically (temp file + rename: nothing
// appears under `path` unless the whole file was written). `metadata` goes into __metadata__.
void write_calibration_tokens(const TextCalibrationSet& set, const std::string& path,
                              const std::map<std::string, std::string>& metadata);

}  // namespace qf::tokenizer
