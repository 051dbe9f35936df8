// input_scale rules (see input_scales.hpp).
#include "quantize/input_scales.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include "calibrate/act_histogram.hpp"
#include "core/check.hpp"
#include "core/log.hpp"
#include "core/strings.hpp"
#include "formats/atomic_file.hpp"
#include "numerics/nvfp4.hpp"

namespace qf::pipeline {
namespace {

float input_scale_of_amax(float amax) {
  return numerics::nvfp4_scale_from_amax(amax, numerics::Nvfp4ScaleDivision::kTrueDivide);
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// "w1" / "w2" / "w3" of a routed-expert module, "" otherwise.
std::string expert_projection(const NativeTensor& t, const std::string& module) {
  if (t.expert < 0) return "";
  return module.substr(module.rfind('.') + 1);
}

}  // namespace

std::map<std::string, float> amax_of_record(const formats::LayerRecord& record) {
  const auto names_it = record.attrs.find("linear_names");
  const auto amax_it = record.f32.find("input_amax");
  QF_CHECK(names_it != record.attrs.end() && amax_it != record.f32.end(), "calibration record of",
           "layer", record.layer, "lacks linear_names/input_amax");
  const auto names = split_lines(names_it->second);
  QF_CHECK(names.size() == amax_it->second.size(), "calibration record of layer", record.layer,
           "has", names.size(), "linear names but", amax_it->second.size(), "amax values");
  std::map<std::string, float> out;
  for (size_t i = 0; i < names.size(); ++i) {
    const float amax = amax_it->second[i];
    QF_CHECK(numerics::is_finite_float(amax) && amax >= 0, "calibration record of layer",
             record.layer, "has amax", amax, "for", names[i]);
    out[names[i]] = amax;
  }
  return out;
}

std::map<std::string, float> clip_amax_of_record(const formats::LayerRecord& record,
                                                 const ActScaleMethod& method) {
  std::map<std::string, float> amax = amax_of_record(record);
  if (!method.needs_histogram()) return amax;
  const auto hist_it = record.i64.find("input_hist");
  const auto bins_it = record.attrs.find("input_hist_bins");
  QF_CHECK(hist_it != record.i64.end(), "--act-scale", act_scale_name(method),
           "needs activation histograms, but the calibration record of layer", record.layer,
           "has none (CUDA backend, an --amax-file or an older version); use --act-scale max or "
           "calibrate with --backend cpu");
  QF_CHECK(bins_it != record.attrs.end() && bins_it->second == kActHistBinning,
           "calibration record of layer", record.layer, "has histograms binned as",
           bins_it == record.attrs.end() ? "(unknown)" : bins_it->second, ", expected",
           kActHistBinning);
  const auto names = split_lines(record.attrs.at("linear_names"));
  QF_CHECK(hist_it->second.size() == names.size() * kActHistBins, "calibration record of layer",
           record.layer, "has", hist_it->second.size(), "histogram counts for", names.size(),
           "linears");
  for (size_t i = 0; i < names.size(); ++i) {
    const std::vector<int64_t> hist(hist_it->second.begin() + i * kActHistBins,
                                    hist_it->second.begin() + (i + 1) * kActHistBins);
    amax[names[i]] = select_clip_amax(method, hist, amax[names[i]]);
  }
  return amax;
}

formats::LayerRecord calib_record_from_amax(const QuantizePlan& plan, int layer,
                                            const std::map<std::string, float>& amax) {
  formats::LayerRecord record;
  record.layer = layer;
  std::string names;
  std::vector<float> values;
  for (const auto& weight : plan.targets_of_layer(layer)) {
    const std::string module = QuantizePlan::module_of(weight);
    const auto it = amax.find(module);
    names += module + "\n";
    values.push_back(it == amax.end() ? 0.0f : it->second);
  }
  record.attrs["linear_names"] = names;
  record.attrs["source"] = "amax file";
  record.f32["input_amax"] = values;
  return record;
}

float min_input_amax() {
  float amax = std::numeric_limits<float>::min() * numerics::kNvfp4AmaxPerScale;
  while (input_scale_of_amax(amax) < std::numeric_limits<float>::min()) {
    amax = std::nextafter(amax, std::numeric_limits<float>::infinity());
  }
  return amax;
}

std::map<std::string, float> read_amax_file(const std::string& path) {
  const auto json = formats::read_json_file(path);
  QF_CHECK(json.is_object(), path + ":", "expected a JSON object {module: amax}");
  std::map<std::string, float> out;
  for (const auto& [key, value] : json.items()) {
    const std::string name = escape_nonprintable(key);
    QF_CHECK(value.is_number(), path + ":", "value of", name, "is not a number:", value.dump());
    const double wide = value.get<double>();
    const float amax = static_cast<float>(wide);
    QF_CHECK(numerics::is_finite_float(amax) && amax >= 0, path + ":", "amax of", name, "is",
             value.dump(), "(must be finite in float32 and >= 0)");
    QF_CHECK(amax == 0 || amax >= min_input_amax(), path + ":", "amax of", name, "is", value.dump(),
             "- below", str_cat(min_input_amax(), ","),
             "the smallest amax whose input_scale (amax / 2688) is a normal float32; use 0 for "
             "a module that was never seen");
    out[key] = amax;
  }
  return out;
}

InputScales compute_input_scales(const QuantizePlan& plan,
                                 const std::map<int, formats::LayerRecord>& calib_records,
                                 const ActScaleMethod& method) {
  std::map<std::string, float> amax;
  for (const auto& [layer, record] : calib_records) {
    for (const auto& [module, value] : clip_amax_of_record(record, method)) amax[module] = value;
  }
  // Fallback pool: per projection, the max over calibrated routed experts of every layer.
  std::map<std::string, float> pool;
  for (const auto& weight : plan.targets) {
    const std::string module = QuantizePlan::module_of(weight);
    const std::string proj = expert_projection(plan.tensor(weight), module);
    const auto it = amax.find(module);
    if (!proj.empty() && it != amax.end() && it->second > 0) {
      pool[proj] = std::max(pool[proj], it->second);
    }
  }
  InputScales out;
  std::map<std::string, float> resolved;
  for (const auto& weight : plan.targets) {
    const std::string module = QuantizePlan::module_of(weight);
    const auto it = amax.find(module);
    float value = it == amax.end() ? 0.0f : it->second;
    if (value == 0) {
      const std::string proj = expert_projection(plan.tensor(weight), module);
      QF_CHECK(!proj.empty(), "no calibration amax for", module,
               "(every token passes this linear, so its calibration record is missing or broken)");
      QF_CHECK(pool.count(proj), "expert", module, "saw no calibration token and no routed expert",
               proj, "of any layer did either; cannot derive an input_scale");
      value = pool[proj];
      out.fallback_modules.push_back(module);
    }
    resolved[module] = value;
  }
  for (const auto& weight : plan.targets) {
    const std::string module = QuantizePlan::module_of(weight);
    float value = resolved[module];
    const auto pair = plan.pair_of.find(weight);
    if (pair != plan.pair_of.end()) {
      value = std::max(value, resolved[QuantizePlan::module_of(pair->second)]);
    }
    if (value < min_input_amax()) {
      log_warn("input amax ", value, " of ", module, " is below ", min_input_amax(),
               " (its input_scale would be 0 or subnormal): raised to that");
      value = min_input_amax();
    }
    const float scale = input_scale_of_amax(value);
    QF_CHECK(std::isnormal(scale) && scale > 0, "input_scale of", module, "is", scale, "(amax",
             value, "); it must be a normal, positive float32");
    out.of_module[module] = scale;
  }
  return out;
}

}  // namespace qf::pipeline
