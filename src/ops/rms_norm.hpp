// RMSNorm of the reference forward (transformers DeepseekV4RMSNorm and UnweightedRMSNorm):
// y = x * rsqrt(mean(x^2) + eps) [* weight], per row, FP32. Does not own: where norms sit.
#pragma once
#include <cstdint>

namespace qf::ops {

// In place over n_rows rows of n_cols; weight may be null (the unweighted variant).
// The mean of squares is accumulated in double and rounded to float before adding eps.
void rms_norm_rows(float* x, int64_t n_rows, int64_t n_cols, const float* weight, float eps);

// out = rms_norm(x) without touching x (same rules as rms_norm_rows).
void rms_norm_rows_to(const float* x, float* out, int64_t n_rows, int64_t n_cols,
                      const float* weight, float eps);

}  // namespace qf::ops
