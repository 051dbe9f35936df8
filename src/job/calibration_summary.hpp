// What the calibration records say, summed up for the quantization report (and its HTML page):
// tokens routed to each expert of each layer, and each layer's range of input amax. Owns only
// that summary. Does not own the records (calibrate/) nor the report's files (report/).
#pragma once
#include <map>
#include <nlohmann/json.hpp>

#include "formats/layer_record.hpp"

namespace qf::pipeline {

// {"expert_tokens": [[n per expert] per layer],
//  "input_amax": [{"layer", "min", "max", "n_modules"}]} (layers in order; min (of the nonzero
//  ones) and max over every linear's recorded amax of that layer, null when none is nonzero;
//  n_modules: the linears recorded).
nlohmann::json calibration_summary(const std::map<int, formats::LayerRecord>& calib);

}  // namespace qf::pipeline
