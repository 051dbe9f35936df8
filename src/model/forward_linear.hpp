// Dense FP32 building blocks of the reference forward: Tensor2D and y = x W^T with the observer
// call. Does not own: any model-specific op.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/linear_observer.hpp"
#include "ops/matmul.hpp"

namespace qf::model {

// Row-major [n_rows, n_cols]; a linear weight is [out_features, in_features] as in PyTorch.
struct Tensor2D {
  int64_t n_rows = 0, n_cols = 0;
  std::vector<float> data;

  const float* row(int64_t r) const { return data.data() + r * n_cols; }
  bool empty() const { return data.empty(); }
};

// y[n_rows, w.n_rows] = x[n_rows, w.n_cols] * w^T, FP32 with 8-way partial sums per dot product.
void matmul_ref(const float* x, int64_t n_rows, const Tensor2D& w, float* y);

// Observes x under `name` (if observer is non-null), applies the observer's input transform to
// a copy of x if it has one (LinearInputObserver::transforms_inputs), then returns x * w^T.
// With bf16_inputs the product uses x rounded to BF16 (RNE) as the CUDA backend's GEMMs do (the
// observer still sees the FP32 x): the reference for comparing that backend.
std::vector<float> linear_forward(const std::string& name, const float* x, int64_t n_rows,
                                  const Tensor2D& w, LinearInputObserver* observer,
                                  bool bf16_inputs = false);

// x rounded to BF16 and widened back (RNE; NaN stays NaN).
std::vector<float> round_to_bf16(const float* x, int64_t n_elems);

}  // namespace qf::model
