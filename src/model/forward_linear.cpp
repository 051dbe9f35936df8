// Dense FP32 matmul and parallel_for of the reference forward.
// Written for clarity: one dot product per output element, no blocking beyond 8 partial sums.
#include "model/forward_linear.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <thread>

#include "core/check.hpp"
#include "numerics/bf16.hpp"

namespace qf::model {

// ---- threads ---------------------------------------------------------------------------------

int64_t thread_count() {
  if (const char* env = std::getenv("QF_THREADS")) {
    const long n = std::strtol(env, nullptr, 10);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? hw : 1;
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t n_threads = std::min<int64_t>(thread_count(), n);
  if (n_threads <= 1) {
    fn(0, n);
    return;
  }
  const int64_t chunk = (n + n_threads - 1) / n_threads;
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(n_threads);
  for (int64_t t = 0; t < n_threads; ++t) {
    const int64_t begin = t * chunk, end = std::min(n, begin + chunk);
    if (begin >= end) break;
    threads.emplace_back([&, t, begin, end] {
      try {
        fn(begin, end);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

// ---- matmul ----------------------------------------------------------------------------------

float dot_ref(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

void matmul_ref(const float* x, int64_t n_rows, const Tensor2D& w, float* y) {
  QF_CHECK(static_cast<int64_t>(w.data.size()) == w.n_rows * w.n_cols, "matmul_ref: weight",
           w.n_rows, "x", w.n_cols, "holds", w.data.size(), "values");
  parallel_for(n_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * w.n_cols;
      float* yr = y + r * w.n_rows;
      for (int64_t o = 0; o < w.n_rows; ++o) yr[o] = dot_ref(xr, w.row(o), w.n_cols);
    }
  });
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
