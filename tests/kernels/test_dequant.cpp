// GPU vs CPU reference for the dequant family (kernels/dequant.cuh): BF16 outputs bit-exact over
// shapes (including non-multiples of 128 and of 8), both scale dtypes, random codes and scales
// with NaN/extreme values, and the unaligned fallback. Needs a GPU ([gpu]).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "gpu_test_util.hpp"
#include "kernels/dequant.cuh"

using namespace qf;
using qf::test::count_mismatches;
using qf::test::download;
using qf::test::Exact;
using qf::test::to_device;
using qf::test::upload;
using namespace qf::kernels;

namespace {

// Mostly realistic UE8M0 scales (2^-27 .. 2^12), with the fast-path edges, 0 and NaN mixed in.
std::vector<uint8_t> random_e8m0(size_t n, std::mt19937& rng) {
  static const uint8_t kEdges[] = {0, 1, 2, 9, 10, 246, 247, 252, 253, 254, 255};
  std::uniform_int_distribution<int> pick(0, 99), normal(100, 139), edge(0, 10);
  std::vector<uint8_t> s(n);
  for (auto& b : s) b = pick(rng) < 90 ? normal(rng) : kEdges[edge(rng)];
  return s;
}

std::vector<float> random_f32_scales(size_t n, std::mt19937& rng) {
  const float kSpecials[] = {0.0f,
                             -0.0f,
                             std::numeric_limits<float>::infinity(),
                             std::numeric_limits<float>::quiet_NaN(),
                             1e-38f,
                             1e-45f,
                             3e38f,
                             -1.0f};
  std::uniform_int_distribution<int> pick(0, 99), special(0, 7);
  std::lognormal_distribution<float> mag(-6.0f, 2.0f);
  std::vector<float> s(n);
  for (auto& x : s) x = pick(rng) < 95 ? mag(rng) : kSpecials[special(rng)];
  return s;
}

std::vector<uint8_t> random_bytes(size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(byte(rng));
  return v;
}

}  // namespace

TEST_CASE("dequant gpu: FP8 block dequant is bit-exact vs reference", "[gpu][dequant]") {
  const auto shape =
      GENERATE(std::pair<int64_t, int64_t>{1, 1}, std::pair<int64_t, int64_t>{1, 8},
               std::pair<int64_t, int64_t>{3, 7}, std::pair<int64_t, int64_t>{128, 128},
               std::pair<int64_t, int64_t>{130, 260}, std::pair<int64_t, int64_t>{257, 1000},
               std::pair<int64_t, int64_t>{200, 1001}, std::pair<int64_t, int64_t>{129, 136},
               std::pair<int64_t, int64_t>{1024, 4096});
  const DType scale_dtype = GENERATE(DType::kF8E8M0, DType::kF32);
  const bool unaligned = GENERATE(false, true);  // codes at byte offset 1: scalar fallback
  const int64_t n_rows = shape.first, n_cols = shape.second;
  CAPTURE(n_rows, n_cols, dtype_name(scale_dtype), unaligned);

  std::mt19937 rng(static_cast<uint32_t>(n_rows * 7919 + n_cols));
  const size_t n_elems = static_cast<size_t>(n_rows * n_cols);
  const size_t n_scales =
      static_cast<size_t>(fp8_block_scale_rows(n_rows) * fp8_block_scale_cols(n_cols));
  const std::vector<uint8_t> codes = random_bytes(n_elems, rng);
  const std::vector<uint8_t> scale_e8m0 = random_e8m0(n_scales, rng);
  const std::vector<float> scale_f32 = random_f32_scales(n_scales, rng);

  Fp8BlockDequantParams p;
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.scale_dtype = scale_dtype;
  p.codes = codes.data();
  p.scale = scale_dtype == DType::kF8E8M0 ? static_cast<const void*>(scale_e8m0.data())
                                          : static_cast<const void*>(scale_f32.data());
  std::vector<uint16_t> ref(n_elems);
  p.out = ref.data();
  fp8_block_dequant_ref(p);

  const size_t offset = unaligned ? 1 : 0;
  DeviceBuffer<uint8_t> d_codes(n_elems + 1), d_scale_e8m0(n_scales);
  DeviceBuffer<float> d_scale_f32(n_scales);
  DeviceBuffer<uint16_t> d_out(n_elems);
  upload(d_codes, codes, offset);
  upload(d_scale_e8m0, scale_e8m0);
  upload(d_scale_f32, scale_f32);
  QF_CUDA_CHECK(cudaMemset(d_out.get(), 0xAB, n_elems * sizeof(uint16_t)), "poison");
  p.codes = d_codes.get() + offset;
  p.scale = scale_dtype == DType::kF8E8M0 ? static_cast<const void*>(d_scale_e8m0.get())
                                          : static_cast<const void*>(d_scale_f32.get());
  p.out = d_out.get();
  CudaStream stream;
  launch_fp8_block_dequant(p, stream.get());
  stream.synchronize("fp8 dequant");

  CHECK(count_mismatches(download(d_out, n_elems), ref, "bf16 [row, col]", Exact::kBits, n_cols) ==
        0);
}

TEST_CASE("dequant gpu: FP4 block dequant is bit-exact vs reference", "[gpu][dequant]") {
  const auto shape =
      GENERATE(std::pair<int64_t, int64_t>{1, 32}, std::pair<int64_t, int64_t>{3, 64},
               std::pair<int64_t, int64_t>{257, 96}, std::pair<int64_t, int64_t>{128, 4096},
               std::pair<int64_t, int64_t>{2048, 4096}, std::pair<int64_t, int64_t>{4096, 2048});
  const int64_t n_rows = shape.first, n_cols = shape.second;
  CAPTURE(n_rows, n_cols);

  std::mt19937 rng(static_cast<uint32_t>(n_rows * 104729 + n_cols));
  const size_t n_elems = static_cast<size_t>(n_rows * n_cols);
  const size_t n_bytes = n_elems / 2;
  const size_t n_scales = n_elems / 32;
  const std::vector<uint8_t> packed = random_bytes(n_bytes, rng);
  const std::vector<uint8_t> scale = random_e8m0(n_scales, rng);

  Fp4BlockDequantParams p;
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.packed = packed.data();
  p.scale = scale.data();
  std::vector<uint16_t> ref(n_elems);
  p.out = ref.data();
  fp4_block_dequant_ref(p);

  DeviceBuffer<uint8_t> d_packed(n_bytes), d_scale(n_scales);
  DeviceBuffer<uint16_t> d_out(n_elems);
  upload(d_packed, packed);
  upload(d_scale, scale);
  QF_CUDA_CHECK(cudaMemset(d_out.get(), 0xAB, n_elems * sizeof(uint16_t)), "poison");
  p.packed = d_packed.get();
  p.scale = d_scale.get();
  p.out = d_out.get();
  CudaStream stream;
  launch_fp4_block_dequant(p, stream.get());
  stream.synchronize("fp4 dequant");

  CHECK(count_mismatches(download(d_out, n_elems), ref, "bf16 [row, col]", Exact::kBits, n_cols) ==
        0);
}

TEST_CASE("dequant gpu: launchers reject bad shapes and alignment", "[gpu][dequant]") {
  DeviceBuffer<uint8_t> bytes(256);
  DeviceBuffer<uint16_t> out(256);
  Fp4BlockDequantParams p;
  p.packed = bytes.get();
  p.scale = bytes.get();
  p.out = out.get();
  p.n_rows = 1;
  p.n_cols = 48;
  CHECK_THROWS_AS(launch_fp4_block_dequant(p, nullptr), qf::Error);
  p.n_cols = 32;
  p.packed = bytes.get() + 1;  // FP4 requires 4-byte aligned packed data
  CHECK_THROWS_AS(launch_fp4_block_dequant(p, nullptr), qf::Error);
  p.n_rows = 0;  // empty: nothing launched
  CHECK_NOTHROW(launch_fp4_block_dequant(p, nullptr));
}
