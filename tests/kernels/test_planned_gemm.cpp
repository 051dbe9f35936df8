// PlannedGemm (src/gpu/planned_gemm.hpp) against a CPU FP32 matmul of the same BF16 values and
// against gemm_bf16: for row counts across and inside buckets (1 .. 1000), wide and narrow
// shapes, row strides larger than k; results equal to the reference within FP32 summation-order
// error, the same bits on a second call (a resume compares records bit for bit), one plan per
// bucket, and an unaligned operand taking the cublasGemmEx fallback. Needs a GPU ([gpu]).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "gpu/cublas_handle.hpp"
#include "gpu/gemm.hpp"
#include "gpu/planned_gemm.hpp"
#include "gpu_test_util.hpp"
#include "numerics/bf16.hpp"

using namespace qf;
using qf::test::download;
using qf::test::Mismatches;
using qf::test::to_device;
using qf::test::upload;

namespace {

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<uint16_t> out(n);
  for (auto& v : out) v = numerics::float_to_bf16(u(rng));
  return out;
}

// y[m, n] (row stride ldy) = x[m, k] (stride ldx) w[n, k]^T in double; bound = sum |x||w|.
void reference(const std::vector<uint16_t>& x, int64_t ldx, const std::vector<uint16_t>& w,
               int64_t m, int64_t n, int64_t k, std::vector<double>* y,
               std::vector<double>* bound) {
  y->assign(m * n, 0.0);
  bound->assign(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0, b = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double a = numerics::bf16_to_float(x[i * ldx + p]);
        const double c = numerics::bf16_to_float(w[j * k + p]);
        s += a * c;
        b += std::fabs(a * c);
      }
      (*y)[i * n + j] = s;
      (*bound)[i * n + j] = b;
    }
  }
}

}  // namespace

TEST_CASE("PlannedGemm equals the FP32 reference, deterministic, one plan per bucket",
          "[gpu][gemm]") {
  CudaStream stream;
  gpu::CublasHandle cublas(stream.get());
  gpu::PlannedGemm planned(stream.get());
  struct Shape {
    int64_t n, k, ldx;
  };
  for (const Shape s : {Shape{256, 128, 128}, Shape{64, 512, 520}, Shape{384, 256, 256}}) {
    const int64_t max_m = 1000, ldy = s.n + 8;
    const auto x = random_bf16(max_m * s.ldx, 1 + static_cast<uint32_t>(s.n));
    const auto w = random_bf16(s.n * s.k, 2 + static_cast<uint32_t>(s.k));
    auto dx = to_device(x);
    auto dw = to_device(w);
    DeviceBuffer<float> dy(max_m * ldy), dy2(max_m * ldy), dref(max_m * ldy);
    const int64_t plans_before = planned.n_plans();
    for (const int64_t m : {1, 7, 16, 17, 100, 128, 129, 1000}) {
      CAPTURE(s.n, s.k, s.ldx, m);
      planned.bf16(cublas, dx.get(), s.ldx, dw.get(), dy.get(), ldy, m, s.n, s.k);
      planned.bf16(cublas, dx.get(), s.ldx, dw.get(), dy2.get(), ldy, m, s.n, s.k);
      gpu::gemm_bf16(cublas, dx.get(), s.ldx, dw.get(), dref.get(), ldy, m, s.n, s.k);
      QF_CUDA_CHECK(cudaStreamSynchronize(stream.get()), "gemm");
      const auto y = download(dy, m * ldy), y2 = download(dy2, m * ldy);
      const auto yref = download(dref, m * ldy);
      std::vector<double> expect, bound;
      reference(x, s.ldx, w, m, s.n, s.k, &expect, &bound);
      Mismatches far("planned vs fp64 [row, col]", s.n), far_ref("cublas vs fp64 [row, col]", s.n);
      Mismatches bits("planned, second run [row, col]", s.n);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < s.n; ++j) {
          const uint64_t at = uint64_t(i * s.n + j);
          const double tol = 1e-5 * bound[at] + 1e-30;
          const float got = y[i * ldy + j];
          far.check(!(std::fabs(got - expect[at]) > tol), at, double(got), expect[at]);
          far_ref.check(!(std::fabs(yref[i * ldy + j] - expect[at]) > tol), at,
                        double(yref[i * ldy + j]), expect[at]);
          bits.expect(at, got, y2[i * ldy + j]);
        }
      }
      CHECK(far.count() + far_ref.count() == 0);
      CHECK(bits.count() == 0);
    }
    // Buckets 16, 32 (17), 128 (100, 128), 256 (129), 1024 (1000): 1 and 7 share bucket 16.
    CHECK(planned.n_plans() - plans_before == 5);
  }
  CHECK(gpu::PlannedGemm::bucket_of(1) == 16);
  CHECK(gpu::PlannedGemm::bucket_of(17) == 32);
  CHECK(gpu::PlannedGemm::bucket_of(1024) == 1024);
  CHECK(gpu::PlannedGemm::bucket_of(1025) == 2048);
}

TEST_CASE("PlannedGemm takes the cublasGemmEx fallback for unaligned operands", "[gpu][gemm]") {
  CudaStream stream;
  gpu::CublasHandle cublas(stream.get());
  gpu::PlannedGemm planned(stream.get());
  const int64_t m = 33, n = 64, k = 64;
  const auto x = random_bf16((m + 1) * k, 7);
  const auto w = random_bf16(n * k, 8);
  auto dx = to_device(x);
  auto dw = to_device(w);
  DeviceBuffer<float> dy(m * n), dref(m * n);
  // x starting one BF16 element in: 2-byte aligned only.
  planned.bf16(cublas, dx.get() + 1, k, dw.get(), dy.get(), n, m, n, k);
  gpu::gemm_bf16(cublas, dx.get() + 1, k, dw.get(), dref.get(), n, m, n, k);
  QF_CUDA_CHECK(cudaStreamSynchronize(stream.get()), "gemm");
  CHECK(planned.n_fallbacks() == 1);
  const auto y = download(dy, m * n), yref = download(dref, m * n);
  CHECK(std::memcmp(y.data(), yref.data(), y.size() * 4) == 0);  // the same call: same bits
}
