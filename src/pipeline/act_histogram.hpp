// Activation histograms of calibration: a fixed log2-spaced binning of |x| shared by every rank
// and run, so that histograms add exactly (integer SUM over ranks), and the observer that fills
// one per linear beside the amax. Owns: the binning and HistogramRecorder. Does not own: the
// reductions (dist/), the calib record layout (calibrate.hpp) or what is chosen from the counts
// (act_scale.hpp).
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "model/linear_observer.hpp"

namespace qf::pipeline {

// Bin 0 counts exact zeros (either sign). Bins 1..kActHistLogBins cover [2^-24, 2^24) with
// kActHistSubBins bins per octave, split linearly in the mantissa (edges 2^e * (1 + j/8)): read
// from the float's bits, so the bin of a value never depends on a libm. Values below 2^-24
// (denormals included) go to bin 1, values >= 2^24 (and +-Inf) to the last bin.
constexpr int kActHistMinExp = -24;
constexpr int kActHistMaxExp = 24;
constexpr int kActHistSubBins = 8;
constexpr int kActHistLogBins = (kActHistMaxExp - kActHistMinExp) * kActHistSubBins;
constexpr int kActHistBins = 1 + kActHistLogBins;
// Written into the calib record (attrs["input_hist_bins"]) so that a reader can refuse a
// histogram binned some other way.
constexpr const char* kActHistBinning = "zero+log2[-24,24)x8";

// Bin of one value (NaN: the last bin; the amax check reports NaN separately).
int act_hist_bin(float x);
// Edges of bin b >= 1: [lower, upper). Bin 1's lower edge is 0 and the last bin's upper edge is
// +Inf for what they hold, but these return the nominal edges 2^-24 and 2^24.
double act_hist_lower(int bin);
double act_hist_upper(int bin);
// Adds |x| of n values to hist (kActHistBins counts).
void act_hist_add(int64_t* hist, const float* x, int64_t n);

// AmaxRecorder plus one histogram per observed linear (same names). Thread-safe.
class HistogramRecorder : public model::AmaxRecorder {
 public:
  void observe(const std::string& linear_name, const float* x, int64_t n_rows,
               int64_t n_cols) override;
  // kActHistBins counts of a linear; all zero if never observed.
  std::vector<int64_t> histogram(const std::string& linear_name) const;

 private:
  mutable std::mutex hist_mutex_;
  std::map<std::string, std::vector<int64_t>> hist_;
};

}  // namespace qf::pipeline
