// The CPU reference forward's FP32 matmul (ops::matmul_rows_ref, what eval and the CPU
// calibration spend most of their time in) on V4-Flash shapes: a routed expert's w1 with the
// handful of tokens it sees, the same with more tokens, attention's wq_b, and a slice of the
// head. Prints GFLOP/s per shape at the thread count of thread_count() (QF_THREADS).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "core/parallel.hpp"
#include "model/forward_linear.hpp"
#include "ops/matmul.hpp"

namespace {

struct Shape {
  const char* what;
  int64_t n_rows, w_rows, n_cols;
};

double seconds_of(const Shape& s, const std::vector<float>& x, const std::vector<float>& w,
                  std::vector<float>& y) {
  const auto start = std::chrono::steady_clock::now();
  qf::ops::matmul_rows_ref(x.data(), s.n_cols, s.n_rows, w.data(), s.w_rows, s.n_cols, y.data(),
                           s.w_rows);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main() {
  const Shape shapes[] = {
      {"expert w1, 24 tokens", 24, 2048, 4096},
      {"expert w1, 256 tokens", 256, 2048, 4096},
      {"attn wq_b, 256 tokens", 256, 32768, 1024},
      {"head slice, 128 tokens", 128, 8192, 4096},
  };
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::printf("threads %lld\n", static_cast<long long>(qf::thread_count()));
  std::printf("%-26s %8s %8s %8s %10s %10s\n", "shape", "rows", "outputs", "k", "best ms",
              "GFLOP/s");
  for (const Shape& s : shapes) {
    std::vector<float> x(s.n_rows * s.n_cols), w(s.w_rows * s.n_cols), y(s.n_rows * s.w_rows);
    for (auto& v : x) v = normal(rng);
    for (auto& v : w) v = normal(rng);
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) best = std::min(best, seconds_of(s, x, w, y));
    const double flops = 2.0 * s.n_rows * s.w_rows * s.n_cols;
    std::printf("%-26s %8lld %8lld %8lld %10.2f %10.1f\n", s.what, static_cast<long long>(s.n_rows),
                static_cast<long long>(s.w_rows), static_cast<long long>(s.n_cols), best * 1e3,
                flops / best / 1e9);
  }
  return 0;
}
