// Activation-scale methods (see act_scale.hpp).
#include "quantize/act_scale.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "calibrate/act_histogram.hpp"
#include "core/check.hpp"
#include "numerics/e2m1.hpp"
#include "numerics/nvfp4.hpp"

namespace qf::pipeline {
namespace {

int64_t total_of(const std::vector<int64_t>& hist) {
  int64_t n = 0;
  for (const int64_t c : hist) n += c;
  return n;
}

// One value quantized as the amax of its own block (the model of nvfp4_act_error).
double squared_error(double v, float clip) {
  const float s2 = numerics::nvfp4_scale_from_amax(clip, numerics::Nvfp4ScaleDivision::kTrueDivide);
  const float x = static_cast<float>(v);
  const uint8_t code = numerics::nvfp4_block_scale(std::min(x, clip), s2);
  const float divisor = numerics::nvfp4_block_divisor(code, s2);
  const double q = double(numerics::e2m1_to_float(numerics::nvfp4_encode(x, divisor))) * divisor;
  return (v - q) * (v - q);
}

}  // namespace

const EnumTable<ActScaleMethod::Kind>& act_scale_methods() {
  static const EnumTable<ActScaleMethod::Kind> table(
      "--act-scale",
      {{"max", ActScaleMethod::kMax, "the calibrated max |x| (as ModelOpt)"},
       {"percentile", ActScaleMethod::kPercentile,
        "the P-th percentile of |x| (percentile:P, 0 < P <= 100; default 99.99)"},
       {"mse", ActScaleMethod::kMse, "minimises a modelled NVFP4 activation error"}});
  return table;
}

ActScaleMethod parse_act_scale(const std::string& text) {
  const size_t colon = text.find(':');
  ActScaleMethod m;
  m.kind = act_scale_methods().parse(text.substr(0, colon));
  if (colon == std::string::npos) return m;
  QF_CHECK(m.kind == ActScaleMethod::kPercentile, "--act-scale", text,
           ": only percentile takes :P");
  char* end = nullptr;
  const std::string p = text.substr(colon + 1);
  m.percentile = std::strtod(p.c_str(), &end);
  QF_CHECK(!p.empty() && end && *end == '\0' && m.percentile > 0 && m.percentile <= 100,
           "--act-scale", text, ": P must be a number in (0, 100]");
  return m;
}

std::string act_scale_name(const ActScaleMethod& method) {
  const std::string name = act_scale_methods().name(method.kind);
  if (method.kind != ActScaleMethod::kPercentile) return name;
  char p[32];
  std::snprintf(p, sizeof(p), ":%.10g", method.percentile);
  return name + p;
}

float percentile_clip(const std::vector<int64_t>& hist, float amax, double percentile) {
  QF_CHECK(hist.size() == size_t(kActHistBins), "activation histogram has", hist.size(),
           "bins, expected", kActHistBins);
  const int64_t n = total_of(hist);
  if (n == 0 || amax <= 0) return amax;
  // Rank of the percentile value, 1-based; long double keeps P = 99.99 of 1e12 counts exact.
  int64_t rank = static_cast<int64_t>(std::ceil((long double)percentile / 100 * n));
  rank = std::clamp<int64_t>(rank, 1, n);
  int64_t cum = 0;
  for (int b = 0; b < kActHistBins; ++b) {
    cum += hist[b];
    if (cum < rank) continue;
    if (b == 0) return amax;  // most values exactly zero: nothing to clip by
    return static_cast<float>(std::min<double>(act_hist_upper(b), amax));
  }
  return amax;
}

double nvfp4_act_error(const std::vector<int64_t>& hist, float amax, float clip) {
  double err = 0;
  for (int b = 1; b < kActHistBins; ++b) {
    if (!hist[b]) continue;
    const double v = std::min<double>(std::sqrt(act_hist_lower(b) * act_hist_upper(b)), amax);
    err += double(hist[b]) * squared_error(v, clip);
  }
  return err;
}

float mse_clip(const std::vector<int64_t>& hist, float amax) {
  QF_CHECK(hist.size() == size_t(kActHistBins), "activation histogram has", hist.size(),
           "bins, expected", kActHistBins);
  if (total_of(hist) == 0 || amax <= 0) return amax;
  float best = amax;
  double best_err = nvfp4_act_error(hist, amax, amax);
  for (int b = kActHistLogBins; b >= 1; --b) {
    const double edge = act_hist_upper(b);
    if (edge >= amax) continue;
    if (edge < amax / 64.0) break;
    const float clip = static_cast<float>(edge);
    const double err = nvfp4_act_error(hist, amax, clip);
    if (err < best_err) best = clip, best_err = err;
  }
  return best;
}

float select_clip_amax(const ActScaleMethod& method, const std::vector<int64_t>& hist, float amax) {
  switch (method.kind) {
    case ActScaleMethod::kMax:
      return amax;
    case ActScaleMethod::kPercentile:
      return percentile_clip(hist, amax, method.percentile);
    case ActScaleMethod::kMse:
      return mse_clip(hist, amax);
  }
  return amax;
}

}  // namespace qf::pipeline
