// Activation-scale methods: which clipping amax of a linear's input becomes its input_scale
// (= clip / (6 * 448)), from the calibrated amax and, for the non-max methods, the calibration
// histogram (act_histogram.hpp). Owns: the method names and the selection rules. Does not own
// the histogram collection or the input-scale rules around it (input_scales.hpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/enum_table.hpp"

namespace qf::pipeline {

struct ActScaleMethod {
  enum Kind { kMax, kPercentile, kMse };
  Kind kind = kMax;
  double percentile = 99.99;  // kPercentile: in (0, 100]
  bool needs_histogram() const { return kind != kMax; }
};

// The method names of --act-scale (its help, and the name part of parse_act_scale).
const EnumTable<ActScaleMethod::Kind>& act_scale_methods();
// METHOD or percentile:P (0 < P <= 100): the method through act_scale_methods(), the :P suffix
// here; throws naming --act-scale and the text.
ActScaleMethod parse_act_scale(const std::string& text);
// Canonical text ("max", "percentile:99.99", "mse"): the run's provenance.
std::string act_scale_name(const ActScaleMethod& method);

// The clipping amax of one linear: amax itself for kMax, for an empty histogram (no count) or
// amax 0; otherwise the method's choice, always in (0, amax]. hist: kActHistBins counts.
float select_clip_amax(const ActScaleMethod& method, const std::vector<int64_t>& hist, float amax);

// percentile: the upper edge of the bin holding the ceil(P% * n)-th smallest |x| (zeros
// included), clamped to amax.
float percentile_clip(const std::vector<int64_t>& hist, float amax, double percentile);

// mse: the clip minimising nvfp4_act_error over the candidates = every bin upper edge in
// [amax/64, amax) plus amax itself (ties: the larger clip).
float mse_clip(const std::vector<int64_t>& hist, float amax);

// The error model of mse (sum over the histogram of count * squared error). Each value v (the
// bin's geometric centre; clamped to amax) is treated as the amax of its own 16-block: global
// scale s = clip / 2688, block scale = E4M3(min(v, clip) / (6 s)) clamped as the serving
// quantizer does, then v is clipped to the block range and rounded to E2M1 at that block scale.
// So it charges clipping error (v > clip), the E4M3 resolution of the block scale and the
// rounding to zero of blocks too small for the scale range (large clips); it does not model the
// error an outlier inflicts on the other 15 elements of its block.
double nvfp4_act_error(const std::vector<int64_t>& hist, float amax, float clip);

}  // namespace qf::pipeline
