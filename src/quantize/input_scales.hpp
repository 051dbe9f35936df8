// Activation scales of the NVFP4 targets from the calibration records of all regular layers:
// input_scale = amax / 2688, w1/w3 sharing max(amax), and the documented fallback for routed
// experts that no calibration token reached (FORMATS.md §3, ModelOpt DS-V4 `_load_merged_amax`).
// Owns: the calib record format's reading side and those rules. Does not own calibration.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "formats/layer_record.hpp"
#include "quantize/act_scale.hpp"
#include "quantize/quantize_plan.hpp"

namespace qf::pipeline {

// Calib record layout (written by the calibration engine or by an imported amax file):
//   attrs["linear_names"]  module names ('\n'-joined), e.g. layers.3.ffn.experts.5.w1
//   f32["input_amax"]      max |input| per module, same order; 0 = never seen
//   i64["expert_tokens"]   tokens routed to each expert of the layer (optional)
//   i64["input_hist"]      [n modules, kActHistBins] |input| histograms (optional; needed by
//                          every --act-scale but max), attrs["input_hist_bins"] its binning
std::map<std::string, float> amax_of_record(const formats::LayerRecord& record);
// The clipping amax of every module of the record under `method` (amax_of_record for max).
// Throws when a non-max method meets a record without (or with differently binned) histograms.
std::map<std::string, float> clip_amax_of_record(const formats::LayerRecord& record,
                                                 const ActScaleMethod& method);

// A calib record built from a {module: amax} map for the targets of `layer` (modules absent
// from the map are "not seen", amax 0). Used by `quantize --amax-file`.
formats::LayerRecord calib_record_from_amax(const QuantizePlan& plan, int layer,
                                            const std::map<std::string, float>& amax);
// Reads {module: amax} from a JSON file; errors name the file and key. Each amax must be finite
// and either 0 ("never seen": the module gets the uncalibrated rule below) or at least
// min_input_amax(): a smaller one would give an input_scale that is 0 or subnormal in float32
// (1e-45 / 2688 == 0), which loaders divide by; refused as a unit or typing mistake.
std::map<std::string, float> read_amax_file(const std::string& path);

// The smallest input amax whose input_scale (amax / 2688, float32 true division) is a normal
// float32 (>= 2^-126), about 3.16e-35.
float min_input_amax();

struct InputScales {
  std::map<std::string, float> of_module;     // every target module -> input_scale
  std::vector<std::string> fallback_modules;  // experts that got the fallback amax
};

// Throws naming the module when a non-expert target has no amax, or when an unseen expert has
// no calibrated expert of the same projection to fall back on. The amax of each module is first
// replaced by its clipping amax under `method` (act_scale.hpp); the rules above then apply to it.
// A calibrated amax in (0, min_input_amax()) (activations that small are as good as zero, but
// were seen) is raised to min_input_amax() with a warning naming the module, as ModelOpt's
// export_amax clamps to FLT_MIN, so that every input_scale is a normal, positive float32.
InputScales compute_input_scales(const QuantizePlan& plan,
                                 const std::map<int, formats::LayerRecord>& calib_records,
                                 const ActScaleMethod& method = {});

}  // namespace qf::pipeline
