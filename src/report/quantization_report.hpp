// The quantization report: one JSON document next to an export OUT (`<OUT>.quantization_report
// .json`, not inside OUT, whose bytes must not depend on the run: rank count, times) plus the
// same as a human-readable table (`<OUT>.quantization_report.txt`) and a web page
// (`<OUT>.quantization_report.html`, quantization_report_html.hpp). `quantize` writes its
// section (options, lossless-cast counts, uncalibrated experts, phase times), `eval` merges its
// own (eval_report_json) into the same file, keeping the other. Both files written atomically.
// Owns: the file names, the document's top level and the text table. Does not own the sections'
// contents (job/quantize_report_section, eval/eval_report).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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
// Writes the JSON (indent 2), its text table and its HTML page, each atomically.
void write_quantization_report(const std::string& json_path, const nlohmann::json& report);
// The human-readable table of a report (both sections when present).
std::string quantization_report_text(const nlohmann::json& report);

}  // namespace qf::pipeline
