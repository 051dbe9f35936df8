// AmaxRecorder: max |x| per linear and routed-token counts per expert (calibration statistics).
#include "model/linear_observer.hpp"

#include <algorithm>
#include <cmath>

namespace qf::model {

float abs_max(const float* x, int64_t n_elems) {
  float m = 0.0f;
  for (int64_t i = 0; i < n_elems; ++i) {
    const float a = std::fabs(x[i]);
    if (std::isnan(a)) return a;
    m = std::max(m, a);
  }
  return m;
}

void AmaxRecorder::observe(const std::string& linear_name, const float* x, int64_t n_rows,
                           int64_t n_cols) {
  const float m = abs_max(x, n_rows * n_cols);
  std::lock_guard<std::mutex> lock(mutex_);
  float& slot = amax_[linear_name];
  if (std::isnan(m) || std::isnan(slot)) {
    slot = std::nanf("");
  } else {
    slot = std::max(slot, m);
  }
}

void AmaxRecorder::observe_expert_tokens(int layer, int expert, int64_t n_tokens) {
  std::lock_guard<std::mutex> lock(mutex_);
  tokens_[{layer, expert}] += n_tokens;
}

float AmaxRecorder::amax(const std::string& linear_name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = amax_.find(linear_name);
  return it == amax_.end() ? 0.0f : it->second;
}

int64_t AmaxRecorder::expert_tokens(int layer, int expert) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = tokens_.find({layer, expert});
  return it == tokens_.end() ? 0 : it->second;
}

}  // namespace qf::model
