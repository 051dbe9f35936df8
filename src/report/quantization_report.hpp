// The quantization report: one JSON document next to an export OUT (`<OUT>.quantization_report
// .json`, not inside OUT, whose bytes must not depend on the run: rank count, times) plus the
// same as a human-readable table (`<OUT>.quantization_report.txt`). `quantize` writes its
// section (options, lossless-cast counts, uncalibrated experts, phase times), `eval` merges its
// own (eval_report_json) into the same file, keeping the other. Both files written atomically.
// Owns: the file names, the document's top level, the quantize section and the text table.
// Does not own: the eval numbers (eval.hpp) or what quantize computes.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "job/quantize_job.hpp"

namespace qf::pipeline {

// {"format": kQuantizationReportFormat, "quantize": {...}, "eval": {...}}; either section may be
// absent (a report written by eval --report elsewhere, or before eval ran).
constexpr const char* kQuantizationReportFormat = "quantforge-quantization-report/1";

// "<out_dir>.quantization_report.json" (trailing slashes of out_dir ignored).
std::string quantization_report_path(const std::string& out_dir);
// The table's path beside a report: ".json" replaced by ".txt" (appended if absent).
std::string quantization_report_text_path(const std::string& json_path);

// The report at `path`, or a fresh {"format": ...} when there is none. A file that is not a
// quantization report (unreadable JSON, other format) is replaced: logged, not an error.
nlohmann::json read_quantization_report(const std::string& path);
// Writes the JSON (indent 2) and its text table, each atomically.
void write_quantization_report(const std::string& json_path, const nlohmann::json& report);
// The human-readable table of a report (both sections when present).
std::string quantization_report_text(const nlohmann::json& report);

// What quantize counted, summed over ranks.
struct QuantizeReportTotals {
  uint64_t n_targets_planned = 0;  // NVFP4 targets of the plan
  uint64_t n_targets = 0;          // quantized in this invocation (all ranks)
  uint64_t n_blocks_lossless = 0;
  uint64_t n_blocks_fallback = 0;
  uint64_t bytes_written = 0;
};

// quantize's section. `previous`: the report already at the path (for --export-only, which
// quantizes nothing, the lossless-cast counts are carried over from it when it has them).
nlohmann::json quantize_report_section(const QuantizeOptions& options, const QuantizeReport& rank0,
                                       const QuantizeReportTotals& totals,
                                       const std::vector<std::string>& uncalibrated_experts,
                                       int world_size, const nlohmann::json& previous);

}  // namespace qf::pipeline
