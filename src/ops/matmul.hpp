// FP32 dot product and row matmul of the reference forward (shared by the model's linears,
// eval and the kernels' references). Owns only the arithmetic order; no weights, no observers.
#pragma once
#include <cstdint>

namespace qf::ops {

// sum_i a[i] * b[i] in FP32 with 8 interleaved partial sums (the one dot product of the forward).
float dot_ref(const float* a, const float* b, int64_t n);

// y[r * y_stride + o] = dot_ref(x + r * x_stride, w + o * n_cols, n_cols) for
// r < n_rows, o < w_rows (w row-major [w_rows, n_cols]). Every element bit-identical to that
// dot_ref call whatever the thread count.
void matmul_rows_ref(const float* x, int64_t x_stride, int64_t n_rows, const float* w,
                     int64_t w_rows, int64_t n_cols, float* y, int64_t y_stride);

}  // namespace qf::ops
