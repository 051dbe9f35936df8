// Log2 binning of |x| and HistogramRecorder (see act_histogram.hpp).
#include "calibrate/act_histogram.hpp"

#include <cmath>

namespace qf::pipeline {

double act_hist_lower(int bin) {
  const int k = bin - 1;
  return std::ldexp(1.0 + double(k % kActHistSubBins) / kActHistSubBins,
                    kActHistMinExp + k / kActHistSubBins);
}

double act_hist_upper(int bin) {
  return bin >= kActHistLogBins ? std::ldexp(1.0, kActHistMaxExp) : act_hist_lower(bin + 1);
}

void HistogramRecorder::observe(const std::string& linear_name, const float* x, int64_t n_rows,
                                int64_t n_cols) {
  model::AmaxRecorder::observe(linear_name, x, n_rows, n_cols);
  // Binned outside the lock into a local histogram: the forward may call from several threads.
  std::vector<int64_t> local(kActHistBins, 0);
  act_hist_add(local.data(), x, n_rows * n_cols);
  std::lock_guard<std::mutex> lock(hist_mutex_);
  auto& slot = hist_[linear_name];
  if (slot.empty()) slot.assign(kActHistBins, 0);
  for (int b = 0; b < kActHistBins; ++b) slot[b] += local[b];
}

std::vector<int64_t> HistogramRecorder::histogram(const std::string& linear_name) const {
  std::lock_guard<std::mutex> lock(hist_mutex_);
  const auto it = hist_.find(linear_name);
  return it == hist_.end() ? std::vector<int64_t>(kActHistBins, 0) : it->second;
}

}  // namespace qf::pipeline
