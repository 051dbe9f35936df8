// quantize's section of the quantization report (report/quantization_report.hpp): options,
// lossless-cast counts, uncalibrated experts, phase times. Owns only that section.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "job/quantize_job.hpp"

namespace qf::pipeline {

// quantize's section. `previous`: the report already at the path (for --export-only, which
// quantizes nothing, the lossless-cast counts are carried over from it when it has them).
nlohmann::json quantize_report_section(const QuantizeOptions& options, const QuantizeReport& rank0,
                                       const QuantizeReportTotals& totals,
                                       const std::vector<std::string>& uncalibrated_experts,
                                       int world_size, const nlohmann::json& previous);

}  // namespace qf::pipeline
