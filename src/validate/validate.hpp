// `validate`: checks an exported NVFP4 checkpoint against its source, rule by rule as
// docs/EXPORT_FORMAT.md states them, and reports every named check with pass/fail counts.
// Owns: the checks, the error bound and the report. Does not own the export (pipeline/export).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "formats/checksum.hpp"

namespace qf::pipeline {

// The named checks, in report order. Each counts items (tensors, files, pairs, keys) that pass
// or fail; a failure lists the item and the values that broke the rule.
inline constexpr const char* kCheckIndex = "index";          // shard files, weight_map, total_size
inline constexpr const char* kCheckInventory = "inventory";  // every tensor: name, dtype, shape
inline constexpr const char* kCheckLayout = "layout";        // shard membership and source order
inline constexpr const char* kCheckCopies = "copies";        // copied tensors byte-identical
inline constexpr const char* kCheckScales = "scales";        // finite and > 0
inline constexpr const char* kCheckGlobalScale = "global-scale";  // weight_scale_2 rule
inline constexpr const char* kCheckPairScales = "pair-scales";    // w1/w3 equal scales
inline constexpr const char* kCheckAccuracy = "accuracy";         // error bound per element
inline constexpr const char* kCheckLossless = "lossless";         // lossless-cast blocks bit-exact
inline constexpr const char* kCheckConfig = "config";             // config.json
inline constexpr const char* kCheckHfQuantConfig = "hf-quant-config";
inline constexpr const char* kCheckOtherFiles = "other-files";  // non-shard files identical
inline constexpr const char* kCheckChecksums = "checksums";     // quantforge_checksums.json

// Optional integrity manifest in OUT: {"<file relative to OUT>": "<xxh64 hex>", ...}.
using formats::kChecksumsFileName;

struct ValidateOptions {
  std::string source_dir;
  std::string out_dir;
  int n_threads = 4;            // tensors checked at once; memory is bounded per tensor chunk
  int max_listed_failures = 8;  // per check, in the report
};

struct CheckResult {
  std::string name;
  std::string description;
  uint64_t n_pass = 0;
  uint64_t n_fail = 0;
  uint64_t n_skip = 0;                // items a check could not judge (e.g. tensor missing)
  std::vector<std::string> failures;  // the first max_listed_failures, in no fixed order
  std::string note;                   // e.g. "quantforge_checksums.json absent"
  bool passed() const { return n_fail == 0; }
};

// Accuracy bound. The source value x of each element is the exact dequantization of the source
// weight (FP8 x 128x128 scale, or E2M1 x UE8M0, rounded to BF16 as the quantizer saw it; BF16 as
// stored). The decoded value is y = E2M1(code) * s with s = float(E4M3 block scale) *
// weight_scale_2, the block's dequantized scale. Rounding |x|/s to the nearest E2M1 value errs by
// at most half the E2M1 step around it, so
//   |x| <= 6s:  |y - x| <= h(|x|/s) * s,  h = 0.25 on [0, 2], 0.5 on (2, 4], 1 on (4, 6];
//   |x| >  6s:  |y - x| <= |x| - 6s      (saturated at 6s because the block scale rounded down),
// each plus 2^-20 * (|x| + s) for the two float32 roundings (x / s, code * s). A block may exceed
// 6s only as far as E4M3 round-to-nearest allows: amax / (6 * weight_scale_2) must not exceed the
// midpoint between its scale code and the next (else "block scale below amax/6"), which is what
// bounds |x| - 6s. weight_scale_2 itself is pinned by the global-scale check, so a scale that is
// too coarse cannot hide behind a loose bound. Lossless-cast blocks (FP4 source, e8m0 != 0,
// k >= k_max - 17, k <= 125; numerics/mxfp4_to_nvfp4.hpp) must decode to x exactly (-0 == +0),
// unless the export's FP4 experts are requantized (--expert-weights requantize, declared in
// hf_quant_config.json's quantforge block or inferred from weight_scale_2): then their
// weight_scale_2 follows the amax/2688 rule and only the bound applies.
//
// Accuracy of one NVFP4 linear against the exact dequantization of its source weight.
// Relative errors are |decoded - source| / (amax of the source's 16-element block), so that a
// block's error is measured against the scale it was quantized with; an all-zero block uses
// 6 * its dequantized scale instead.
struct TensorAccuracy {
  std::string name;    // `<p>.weight`
  std::string source;  // "FP8", "FP4" or "BF16"
  uint64_t n_elems = 0;
  double worst_rel = 0;            // max relative error
  double mean_rel = 0;             // mean relative error over all elements
  double worst_bound_ratio = 0;    // max |decoded - source| / bound (<= 1 passes)
  uint64_t n_out_of_bound = 0;     // elements above the bound
  uint64_t n_scale_too_small = 0;  // blocks whose amax exceeds what E4M3 rounding allows
  uint64_t n_lossless_blocks = 0;  // FP4 source: 32-blocks the lossless cast must keep exactly
  uint64_t n_exact_blocks = 0;     // ... of which decode bit-exactly
  float source_amax = 0;
  float weight_scale_2 = 0;
  float input_scale = 0;
};

struct ValidateReport {
  std::string source_dir;
  std::string out_dir;
  std::string recipe;                   // "experts", "full", or "unknown" (config.json unreadable)
  std::string expert_weights;           // "cast", "requantize" (maybe "... (inferred ...)"); ""
                                        // when no target has an FP4 source
  std::vector<CheckResult> checks;      // kCheck* order
  std::vector<TensorAccuracy> tensors;  // sorted by name
  double seconds = 0;

  bool passed() const;
  const CheckResult& check(const std::string& name) const;  // throws if no such check
  std::vector<std::string> failed_checks() const;
  std::string summary() const;  // one line: "validate: PASS ..." / "validate: FAIL ..."
  nlohmann::json to_json() const;
};

// Runs every check; never throws for a defect of OUT (each is a failed check), only for an
// unreadable source or bad options.
ValidateReport validate_export(const ValidateOptions& options);

// The final tables: checks with counts, the first failures of each, and per-tensor accuracy
// (the `max_tensors` worst by bound ratio; 0 = all).
void print_validate_report(const ValidateReport& report, std::ostream& out, size_t max_tensors,
                           int max_listed_failures);

// `quantforge validate` (validate_run.cpp): validate_export, its report on `out`, the full
// report as JSON to json_path when set, and with work_dir the work stores' checksums
// (verify_work.hpp). Throws qf::Error with the summary when any check failed.
struct ValidateRunOptions {
  ValidateOptions checks;
  size_t max_tensors = 20;  // per-tensor rows printed, worst first (0 = all)
  std::string json_path;    // "": no JSON
  std::string work_dir;     // "": stores not checked
  // The quantization report the verdict is merged into (section "validate"; its page and text
  // are redrawn): "" = OUT.quantization_report.json when that file exists.
  std::string report_path;
  bool no_report = false;  // leave every report alone
};
void run_validate(const ValidateRunOptions& options, std::ostream& out);

}  // namespace qf::pipeline
