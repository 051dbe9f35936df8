// The reference forward's linears: y = x W^T through ops::matmul_rows_ref, with the observer
// call and the optional BF16 rounding of x.
#include "model/forward_linear.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "numerics/bf16.hpp"
#include "ops/matmul.hpp"

namespace qf::model {

void matmul_ref(const float* x, int64_t n_rows, const Tensor2D& w, float* y) {
  QF_CHECK(static_cast<int64_t>(w.data.size()) == w.n_rows * w.n_cols, "matmul_ref: weight",
           w.n_rows, "x", w.n_cols, "holds", w.data.size(), "values");
  ops::matmul_rows_ref(x, w.n_cols, n_rows, w.data.data(), w.n_rows, w.n_cols, y, w.n_rows);
}

std::vector<float> round_to_bf16(const float* x, int64_t n_elems) {
  std::vector<float> out(static_cast<size_t>(n_elems));
  for (int64_t i = 0; i < n_elems; ++i) {
    out[i] = numerics::bf16_to_float(numerics::float_to_bf16(x[i]));
  }
  return out;
}

std::vector<float> linear_forward(const std::string& name, const float* x, int64_t n_rows,
                                  const Tensor2D& w, LinearInputObserver* observer,
                                  bool bf16_inputs) {
  if (observer != nullptr && n_rows > 0) observer->observe(name, x, n_rows, w.n_cols);
  std::vector<float> transformed;
  if (observer != nullptr && n_rows > 0 && observer->transforms_inputs()) {
    transformed.assign(x, x + n_rows * w.n_cols);
    observer->transform_input(name, transformed.data(), n_rows, w.n_cols);
    x = transformed.data();
  }
  std::vector<float> y(static_cast<size_t>(n_rows * w.n_rows));
  if (bf16_inputs) {
    matmul_ref(round_to_bf16(x, n_rows * w.n_cols).data(), n_rows, w, y.data());
  } else {
    matmul_ref(x, n_rows, w, y.data());
  }
  return y;
}

}  // namespace qf::model
