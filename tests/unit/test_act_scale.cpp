// Activation histograms and activation-scale methods (pipeline/act_histogram.hpp,
// pipeline/act_scale.hpp): binning edges, exact merging, the calib-record reading side, and
// percentile / mse selection on synthetic Gaussian activations with a few outliers.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "calibrate/act_histogram.hpp"
#include "catch_compat.hpp"
#include "formats/layer_record.hpp"
#include "kernels/forward/act_histogram.cuh"
#include "quantize/act_scale.hpp"
#include "quantize/input_scales.hpp"

using namespace qf::pipeline;

namespace {

std::vector<float> gaussian_with_outliers(int n, uint32_t seed, int n_outliers, float outlier) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = normal(rng);
  for (int i = 0; i < n_outliers; ++i) x[size_t(i) * 997 % n] = (i % 2 ? -outlier : outlier);
  return x;
}

std::vector<int64_t> histogram_of(const std::vector<float>& x) {
  std::vector<int64_t> h(kActHistBins, 0);
  act_hist_add(h.data(), x.data(), int64_t(x.size()));
  return h;
}

float abs_max_of(const std::vector<float>& x) {
  float m = 0;
  for (float v : x) m = std::max(m, std::fabs(v));
  return m;
}

}  // namespace

TEST_CASE("bins: zeros apart, edges 2^e(1+j/8), out-of-range values in the edge bins", "[act]") {
  REQUIRE(act_hist_bin(0.0f) == 0);
  REQUIRE(act_hist_bin(-0.0f) == 0);
  REQUIRE(act_hist_bin(1e-30f) == 1);
  REQUIRE(act_hist_bin(std::numeric_limits<float>::denorm_min()) == 1);
  REQUIRE(act_hist_bin(std::ldexp(1.0f, -24)) == 1);
  REQUIRE(act_hist_bin(3e30f) == kActHistLogBins);
  REQUIRE(act_hist_bin(std::numeric_limits<float>::infinity()) == kActHistLogBins);
  REQUIRE(act_hist_bin(std::ldexp(1.0f, 24)) == kActHistLogBins);
  REQUIRE(act_hist_lower(1) == std::ldexp(1.0, -24));
  REQUIRE(act_hist_upper(kActHistLogBins) == std::ldexp(1.0, 24));
  // Every bin's lower edge falls in it, the float just below in the previous bin; sign ignored.
  for (int b = 2; b <= kActHistLogBins; ++b) {
    const float lo = static_cast<float>(act_hist_lower(b));
    REQUIRE(double(lo) == act_hist_lower(b));
    REQUIRE(act_hist_bin(lo) == b);
    REQUIRE(act_hist_bin(-lo) == b);
    REQUIRE(act_hist_bin(std::nextafter(lo, 0.0f)) == b - 1);
    REQUIRE(act_hist_upper(b - 1) == act_hist_lower(b));
  }
  REQUIRE(act_hist_bin(1.0f) == 1 + 24 * 8);
  REQUIRE(act_hist_bin(1.125f) == 2 + 24 * 8);
  REQUIRE(act_hist_bin(1.124f) == 1 + 24 * 8);
}

TEST_CASE("histograms of parts add up to the histogram of the whole, exactly", "[act]") {
  const auto x = gaussian_with_outliers(10000, 1, 3, 50.0f);
  std::vector<int64_t> parts(kActHistBins, 0);
  for (int k = 0; k < 4; ++k) act_hist_add(parts.data(), x.data() + 2500 * k, 2500);
  REQUIRE(parts == histogram_of(x));
  // The recorder: one histogram per name, summed over calls; amax as AmaxRecorder.
  HistogramRecorder rec;
  rec.observe("a", x.data(), 100, 50);
  rec.observe("a", x.data() + 5000, 50, 100);
  REQUIRE(rec.histogram("a") == histogram_of(x));
  REQUIRE(rec.amax("a") == abs_max_of(x));
  REQUIRE(rec.histogram("never") == std::vector<int64_t>(kActHistBins, 0));
}

TEST_CASE("act-scale names parse and print", "[act]") {
  REQUIRE(parse_act_scale("max").kind == ActScaleMethod::kMax);
  REQUIRE(parse_act_scale("mse").kind == ActScaleMethod::kMse);
  REQUIRE(parse_act_scale("percentile").percentile == 99.99);
  REQUIRE(parse_act_scale("percentile:99.9").percentile == 99.9);
  REQUIRE(act_scale_name(parse_act_scale("percentile")) == "percentile:99.99");
  REQUIRE(act_scale_name(parse_act_scale("percentile:99.9")) == "percentile:99.9");
  REQUIRE(act_scale_name(parse_act_scale("mse")) == "mse");
  REQUIRE_THROWS(parse_act_scale("percentile:0"));
  REQUIRE_THROWS(parse_act_scale("percentile:101"));
  REQUIRE_THROWS(parse_act_scale("percentile:abc"));
  REQUIRE_THROWS(parse_act_scale("percentile99"));
  REQUIRE_THROWS(parse_act_scale("minmax"));
}

TEST_CASE("percentile: below amax with outliers, the bin edge above the sample quantile", "[act]") {
  auto x = gaussian_with_outliers(200000, 2, 5, 200.0f);
  const auto h = histogram_of(x);
  const float amax = abs_max_of(x);
  REQUIRE(amax == 200.0f);
  const float p = percentile_clip(h, amax, 99.99);
  REQUIRE(p < amax);
  // At least 99.99% of |x| lie below the chosen edge, and the edge is at most one bin (12.5%)
  // above the exact sample percentile.
  std::vector<float> a(x.size());
  for (size_t i = 0; i < x.size(); ++i) a[i] = std::fabs(x[i]);
  std::sort(a.begin(), a.end());
  const float exact = a[size_t(std::ceil(0.9999 * a.size())) - 1];
  REQUIRE(p > exact);
  REQUIRE(p <= exact * 1.125f);
  REQUIRE(percentile_clip(h, amax, 100) == amax);  // top bin edge 256 clamped to amax
  REQUIRE(percentile_clip(h, amax, 50) < 1.0f);
  // Empty histogram, amax 0, all zeros: amax.
  REQUIRE(percentile_clip(std::vector<int64_t>(kActHistBins, 0), 3.0f, 99) == 3.0f);
  std::vector<int64_t> zeros(kActHistBins, 0);
  zeros[0] = 10;
  REQUIRE(percentile_clip(zeros, 0.0f, 99) == 0.0f);
  REQUIRE(select_clip_amax(parse_act_scale("max"), h, amax) == amax);
}

TEST_CASE("mse: keeps amax unless the outliers push the bulk out of the scale range", "[act]") {
  // Squared error protects outliers: with per-block scales the bulk's rounding barely depends on
  // the global clip, so clipping 5 outliers at 200 sigma costs more than it saves.
  const auto x = gaussian_with_outliers(200000, 3, 5, 200.0f);
  const auto h = histogram_of(x);
  REQUIRE(mse_clip(h, 200.0f) == 200.0f);
  const auto clean = gaussian_with_outliers(200000, 4, 0, 0);
  const float camax = abs_max_of(clean);
  // (a clean Gaussian: within a bin or two of amax, where E4M3 rounding of the scales decides)
  REQUIRE(mse_clip(histogram_of(clean), camax) > camax / 1.3f);
  REQUIRE(mse_clip(std::vector<int64_t>(kActHistBins, 0), 2.0f) == 2.0f);
  // A bulk weighing 1e10 per sample and one outlier 1e7 sigma out: at clip = amax every bulk
  // block scale sits at the E4M3 floor (2^-9) and the bulk rounds to zero, so a lower clip
  // wins; it lies between the percentile and amax, and lowers the modelled error.
  std::vector<int64_t> heavy = histogram_of(gaussian_with_outliers(200000, 5, 0, 0));
  for (auto& c : heavy) c *= 10000000000LL;
  const float amax = 1e7f;
  heavy[act_hist_bin(amax)] += 1;
  const float m = mse_clip(heavy, amax);
  REQUIRE(m < amax);
  REQUIRE(m >= amax / 64);
  REQUIRE(m > percentile_clip(heavy, amax, 99.99));
  REQUIRE(nvfp4_act_error(heavy, amax, m) < nvfp4_act_error(heavy, amax, amax));
  REQUIRE(select_clip_amax(parse_act_scale("mse"), heavy, amax) == m);
}

TEST_CASE("calib records: clip amax per linear; histogram-less records only for max", "[act]") {
  qf::formats::LayerRecord r;
  r.layer = 3;
  r.attrs["linear_names"] = "layers.3.a\nlayers.3.b";
  const auto xa = gaussian_with_outliers(100000, 5, 5, 500.0f);
  const auto xb = gaussian_with_outliers(100000, 6, 0, 0);
  r.f32["input_amax"] = {abs_max_of(xa), abs_max_of(xb)};
  REQUIRE(clip_amax_of_record(r, parse_act_scale("max")).at("layers.3.a") == 500.0f);
  REQUIRE_THROWS(clip_amax_of_record(r, parse_act_scale("percentile")));
  auto ha = histogram_of(xa), hb = histogram_of(xb);
  ha.insert(ha.end(), hb.begin(), hb.end());
  r.i64["input_hist"] = ha;
  REQUIRE_THROWS(clip_amax_of_record(r, parse_act_scale("percentile")));  // binning unnamed
  r.attrs["input_hist_bins"] = kActHistBinning;
  const auto p = clip_amax_of_record(r, parse_act_scale("percentile"));
  REQUIRE(p.at("layers.3.a") < 500.0f);
  REQUIRE(p.at("layers.3.b") <= abs_max_of(xb));
  r.i64["input_hist"].pop_back();
  REQUIRE_THROWS(clip_amax_of_record(r, parse_act_scale("mse")));
}

TEST_CASE("act_hist_ref: gathered expert-sorted rows go to their segment's slot", "[act_scale]") {
  // 3 tokens x 2 columns; rows (token) sorted by expert: expert 0 {2}, expert 1 empty,
  // expert 2 {0, 2}; one row past the last offset (token 1) must not be counted.
  const std::vector<float> x = {0.0f, 1.0f, 2.0f, 4.0f, 1.0f, -1.0f};
  const std::vector<int32_t> row_token = {2, 0, 2, 1};
  const std::vector<int32_t> offsets = {0, 1, 1, 3};
  std::vector<int64_t> hist(4 * kActHistBins, 0), want(4 * kActHistBins, 0);
  qf::kernels::ActHistParams p;
  p.x = x.data();
  p.n_rows = 4;
  p.n_cols = 2;
  p.row_index = row_token.data();
  p.segment_offsets = offsets.data();
  p.n_segments = 3;
  p.hist = hist.data() + kActHistBins;  // experts start at slot 1
  qf::kernels::act_hist_ref(p);
  want[kActHistBins + act_hist_bin(1.0f)] += 2;      // expert 0: token 2
  want[3 * kActHistBins + 0] += 1;                   // expert 2: token 0
  want[3 * kActHistBins + act_hist_bin(1.0f)] += 3;  // token 0's 1.0, token 2's +-1
  REQUIRE(hist == want);
}
