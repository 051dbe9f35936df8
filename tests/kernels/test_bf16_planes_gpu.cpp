// launch_bf16_planes against bf16_planes_ref, bit for bit: random rows over many exponents,
// specials (NaN, Inf, overflow, subnormals), the gather index, odd sizes. [gpu]
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "gpu_test_util.hpp"
#include "kernels/forward/bf16_planes.cuh"

using namespace qf;

TEST_CASE("bf16 planes: CUDA equals the reference bit for bit", "[gpu][bf16_planes]") {
  const int64_t n_src = 37, n_cols = 129;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-140, 120);
  std::vector<float> x(n_src * n_cols);
  for (auto& v : x) v = std::ldexp(normal(rng), exponent(rng));
  x[3] = std::numeric_limits<float>::quiet_NaN();
  x[4] = std::numeric_limits<float>::infinity();
  x[5] = -std::numeric_limits<float>::max();
  x[6] = std::numeric_limits<float>::denorm_min();
  // mode 0: plain rows; 1: gathered rows; 2: gathered with a device row count (the MoE
  // dispatch's): rows past it keep what they held and their index (-1 here) is never read.
  for (const int mode : {0, 1, 2}) {
    const bool gather = mode > 0;
    std::vector<int32_t> index;
    int64_t n_rows = n_src;
    const int32_t row_count = 41;
    if (gather) {
      n_rows = 50;
      for (int64_t r = 0; r < n_rows; ++r) {
        index.push_back(mode == 2 && r >= row_count ? -1 : int32_t((r * 7) % n_src));
      }
    }
    std::vector<uint16_t> mid_ref(n_rows * n_cols, 0xFFFF), lo_ref(n_rows * n_cols, 0xFFFF);
    kernels::Bf16PlanesParams p;
    p.x = x.data();
    p.row_index = gather ? index.data() : nullptr;
    p.row_count = mode == 2 ? &row_count : nullptr;
    p.n_rows = n_rows;
    p.n_cols = n_cols;
    p.mid = mid_ref.data();
    p.lo = lo_ref.data();
    kernels::bf16_planes_ref(p);
    if (mode == 2) CHECK(mid_ref.back() == 0xFFFF);

    auto x_dev = test::to_device(x);
    auto index_dev = test::to_device(index);
    auto count_dev = test::to_device(std::vector<int32_t>{row_count});
    DeviceBuffer<uint16_t> mid_dev(n_rows * n_cols), lo_dev(n_rows * n_cols);
    QF_CUDA_CHECK(cudaMemset(mid_dev.get(), 0xFF, n_rows * n_cols * 2), "memset");
    QF_CUDA_CHECK(cudaMemset(lo_dev.get(), 0xFF, n_rows * n_cols * 2), "memset");
    p.x = x_dev.get();
    p.row_index = gather ? index_dev.get() : nullptr;
    p.row_count = mode == 2 ? count_dev.get() : nullptr;
    p.mid = mid_dev.get();
    p.lo = lo_dev.get();
    kernels::launch_bf16_planes(p, nullptr);
    CHECK(test::download(mid_dev, n_rows * n_cols) == mid_ref);
    CHECK(test::download(lo_dev, n_rows * n_cols) == lo_ref);
  }
}
