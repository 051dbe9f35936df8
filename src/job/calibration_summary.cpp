// calibration_summary (see calibration_summary.hpp).
#include "job/calibration_summary.hpp"

#include <algorithm>
#include <limits>
#include <string>

namespace qf::pipeline {

nlohmann::json calibration_summary(const std::map<int, formats::LayerRecord>& calib) {
  nlohmann::json tokens = nlohmann::json::array();
  nlohmann::json amax = nlohmann::json::array();
  const std::string suffix = ".input_amax";
  for (const auto& [layer, record] : calib) {
    const auto it = record.i64.find("expert_tokens");
    tokens.push_back(it != record.i64.end() ? nlohmann::json(it->second) : nlohmann::json::array());
    float lo = std::numeric_limits<float>::infinity(), hi = 0;
    int n_modules = 0;
    for (const auto& [key, values] : record.f32) {
      // "input_amax": one value per linear of the layer (calibrate.cpp); "<linear>.input_amax":
      // one per key.
      const bool per_key = key.size() > suffix.size() &&
                           key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0;
      if (key != "input_amax" && !per_key) continue;
      for (float v : values) {
        if (v > 0) lo = std::min(lo, v);  // 0: a linear no token reached
        hi = std::max(hi, v);
        ++n_modules;
      }
    }
    amax.push_back({{"layer", layer},
                    {"min", hi > 0 ? nlohmann::json(lo) : nlohmann::json()},
                    {"max", hi > 0 ? nlohmann::json(hi) : nlohmann::json()},
                    {"n_modules", n_modules}});
  }
  return {{"expert_tokens", tokens}, {"input_amax", amax}};
}

}  // namespace qf::pipeline
