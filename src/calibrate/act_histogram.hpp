// Activation histograms of calibration: a fixed log2-spaced binning of |x| shared by every rank
// and run, so that histograms add exactly (integer SUM over ranks), and the observer that fills
// one per linear beside the amax. Owns: the bin edges and HistogramRecorder. Does not own: the
// bin of a value (numerics/act_hist_bins.hpp, shared with the CUDA kernel), the reductions
// (dist/), the calib record layout (calibrate.hpp) or what is chosen from the counts
// (act_scale.hpp).
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "model/linear_observer.hpp"
#include "numerics/act_hist_bins.hpp"

namespace qf::pipeline {

// The binning itself (numerics/act_hist_bins.hpp, shared with the CUDA histogram kernel).
using numerics::act_hist_add;
using numerics::act_hist_bin;
using numerics::kActHistBinning;
using numerics::kActHistBins;
using numerics::kActHistLogBins;
using numerics::kActHistMaxExp;
using numerics::kActHistMinExp;
using numerics::kActHistSubBins;

// Edges of bin b >= 1: [lower, upper). Bin 1's lower edge is 0 and the last bin's upper edge is
// +Inf for what they hold, but these return the nominal edges 2^-24 and 2^24.
double act_hist_lower(int bin);
double act_hist_upper(int bin);

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
