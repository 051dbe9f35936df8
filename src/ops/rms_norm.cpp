// RMSNorm, written to match torch's FP32 order of operations:
// hidden * rsqrt(variance + eps), then weight * hidden.
#include "ops/rms_norm.hpp"

#include <cmath>

namespace qf::ops {

void rms_norm_rows_to(const float* x, float* out, int64_t n_rows, int64_t n_cols,
                      const float* weight, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n_cols;
    float* yr = out + r * n_cols;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < n_cols; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
    const float variance = static_cast<float>(sum_sq / static_cast<double>(n_cols));
    const float inv_rms = 1.0f / std::sqrt(variance + eps);
    for (int64_t i = 0; i < n_cols; ++i) {
      const float h = xr[i] * inv_rms;
      yr[i] = weight != nullptr ? weight[i] * h : h;
    }
  }
}

void rms_norm_rows(float* x, int64_t n_rows, int64_t n_cols, const float* weight, float eps) {
  rms_norm_rows_to(x, x, n_rows, n_cols, weight, eps);
}

}  // namespace qf::ops
