// The quantization report as one self-contained web page, `<OUT>.quantization_report.html`
// beside the JSON and text: no script, no network, inline SVG only. Shows options and timings,
// a layers x experts heat map of calibration tokens with the fallback experts marked, each
// layer's input-amax range, and eval's per-layer errors and worst modules when present.
// Owns: the page. Does not own the report document (quantization_report.hpp).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace qf::pipeline {

// The page's path beside a report: ".json" replaced by ".html" (appended if absent).
std::string quantization_report_html_path(const std::string& json_path);
// The page of a report document (either section may be absent). Element ids the tests look
// for: options, timings, timings-chart, expert-heatmap, amax-ranges, eval, eval-layers,
// worst-modules.
std::string quantization_report_html(const nlohmann::json& report);

}  // namespace qf::pipeline
