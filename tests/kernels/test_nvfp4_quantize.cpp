// GPU vs CPU reference for the NVFP4 kernel family (kernels/nvfp4_quantize.cuh): codes, scales,
// scale_2 and counters bit-exact over shapes and input classes. Needs a GPU ([gpu]).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "core/int_math.hpp"
#include "kernels/nvfp4_quantize.cuh"
#include "tests/nvfp4_test_util.hpp"

using namespace qf;
using namespace qf::kernels;
using namespace qf::numerics;
using qf::test::count_mismatches;
using qf::test::Exact;

namespace {

// Minimal owning device array for the test (core/ has no RAII buffer yet).
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    if (n_) QF_CUDA_CHECK(cudaMalloc(&ptr_, n_ * sizeof(T)), "test alloc");
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return ptr_; }
  void upload(const std::vector<T>& host) {
    if (n_)
      QF_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "");
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    QF_CUDA_CHECK(cudaDeviceSynchronize(), "test sync");
    if (n_)
      QF_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "");
    return host;
  }

 private:
  size_t n_ = 0;
  T* ptr_ = nullptr;
};

enum class Input {
  kNormal,     // N(0, 1), scale_2 from the tensor's amax
  kHeavy,      // Student-t(2) with outliers and zero / single-non-zero blocks
  kBounds,     // exact E2M1 bounds and BF16 neighbours at divisor 1
  kTiny,       // ~1e-38 and BF16 subnormals: divisor below 2^-124 (division path)
  kHuge,       // ~1e30: divisor above 2^16 (division path)
  kSaturate,   // calibrated amax 10x below the data: scales clamp at 448
  kUnderflow,  // calibrated amax 1e4x above the data: scales clamp at 2^-9
  kNonFinite,  // NaN / Inf sprinkled
};

const char* input_name(Input in) {
  static const char* names[] = {"normal", "heavy",    "bounds",    "tiny",
                                "huge",   "saturate", "underflow", "nonfinite"};
  return names[static_cast<int>(in)];
}

// Fills x and returns the scale_2 to quantize it with.
float make_input(Input in, size_t n, uint32_t seed, std::vector<uint16_t>* x) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::student_t_distribution<float> heavy(2.0f);
  x->resize(n);
  auto div = Nvfp4ScaleDivision::kTrueDivide;
  switch (in) {
    case Input::kNormal:
    case Input::kSaturate:
    case Input::kUnderflow:
      for (auto& v : *x) v = float_to_bf16(normal(rng));
      break;
    case Input::kHeavy:
      for (auto& v : *x) v = float_to_bf16(0.02f * heavy(rng));
      for (size_t i = 0; i < n / 64; ++i) (*x)[rng() % n] = float_to_bf16(50.0f * normal(rng));
      for (size_t b = 0; b + 16 <= n; b += 16 * 7) {  // zero blocks, some with one value
        for (size_t i = 0; i < 16; ++i) (*x)[b + i] = 0;
        if (b % 32 == 0) (*x)[b + rng() % 16] = float_to_bf16(normal(rng));
      }
      div = Nvfp4ScaleDivision::kReciprocalMultiply;
      break;
    case Input::kBounds: {
      const float bounds[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f, 0.0f};
      for (size_t i = 0; i < n; ++i) {
        // A bound or one of its BF16 neighbours (0 has no lower one).
        const int base = float_to_bf16(bounds[rng() % 9]);
        uint16_t v = static_cast<uint16_t>(std::max(0, base + static_cast<int>(rng() % 3) - 1));
        if (rng() % 2) v |= 0x8000;
        (*x)[i] = i % 16 == 0 ? float_to_bf16(6.0f) : v;
      }
      return 1.0f / 64;  // block amax 6 -> scale 64, divisor 1
    }
    case Input::kTiny:
      for (auto& v : *x) v = float_to_bf16(1e-38f * normal(rng));
      for (size_t i = 0; i < n / 8; ++i) (*x)[rng() % n] = static_cast<uint16_t>(rng() % 0x80);
      break;
    case Input::kHuge:
      for (auto& v : *x) v = float_to_bf16(1e30f * normal(rng));
      break;
    case Input::kNonFinite:
      for (auto& v : *x) v = float_to_bf16(normal(rng));
      for (size_t i = 0; i < n / 50 + 1; ++i) {
        const uint16_t specials[] = {0x7FC0, 0xFFC0, 0x7F80, 0xFF80, 0x7F81};
        (*x)[rng() % n] = specials[rng() % 5];
      }
      return 0.01f;
  }
  float amax = qf::test::bf16_amax_ref(*x);
  if (in == Input::kSaturate) amax /= 10;
  if (in == Input::kUnderflow) amax *= 1e4f;
  const float scale_2 = nvfp4_scale_from_amax(amax, div);
  return scale_2 > 0 ? scale_2 : 1.0f;
}

}  // namespace

TEST_CASE("nvfp4 quantize + dequantize: GPU bit-exact vs reference", "[gpu][nvfp4]") {
  const auto shape =
      GENERATE(std::pair<int64_t, int64_t>{1, 16}, std::pair<int64_t, int64_t>{3, 48},
               std::pair<int64_t, int64_t>{257, 80}, std::pair<int64_t, int64_t>{64, 4096},
               std::pair<int64_t, int64_t>{2048, 2048},
               // Odd block counts (257 per row) over several grid-stride steps of the
               // resident grid: the two-blocks-per-step loop and the one-block tail.
               std::pair<int64_t, int64_t>{1537, 4112}, std::pair<int64_t, int64_t>{4099, 4112});
  const Input in = GENERATE(Input::kNormal, Input::kHeavy, Input::kBounds, Input::kTiny,
                            Input::kHuge, Input::kSaturate, Input::kUnderflow, Input::kNonFinite);
  const int64_t n_rows = shape.first, n_cols = shape.second;
  const size_t n = static_cast<size_t>(n_rows * n_cols);
  INFO("shape " << n_rows << "x" << n_cols << " input " << input_name(in));
  std::vector<uint16_t> x;
  float scale_2 = make_input(in, n, static_cast<uint32_t>(n + static_cast<int>(in)), &x);

  // Reference.
  std::vector<uint8_t> ref_packed(n / 2), ref_scale(n / 16);
  uint64_t ref_nonfinite = 0;
  Nvfp4QuantizeParams rp;
  rp.x = x.data();
  rp.n_rows = n_rows;
  rp.n_cols = n_cols;
  rp.scale_2 = &scale_2;
  rp.packed = ref_packed.data();
  rp.scale = ref_scale.data();
  rp.n_nonfinite = &ref_nonfinite;
  nvfp4_quantize_ref(rp);
  std::vector<float> ref_y(n);
  Nvfp4DequantizeParams rd;
  rd.packed = ref_packed.data();
  rd.scale = ref_scale.data();
  rd.scale_2 = &scale_2;
  rd.n_rows = n_rows;
  rd.n_cols = n_cols;
  rd.y = ref_y.data();
  nvfp4_dequantize_ref(rd);

  // GPU.
  DeviceArray<uint16_t> d_x(x);
  DeviceArray<float> d_scale_2(std::vector<float>{scale_2});
  DeviceArray<uint8_t> d_packed(n / 2), d_scale(n / 16);
  DeviceArray<uint64_t> d_nonfinite(1);
  DeviceArray<float> d_y(n);
  Nvfp4QuantizeParams gp = rp;
  gp.x = d_x.get();
  gp.scale_2 = d_scale_2.get();
  gp.packed = d_packed.get();
  gp.scale = d_scale.get();
  gp.n_nonfinite = d_nonfinite.get();
  launch_nvfp4_quantize(gp, nullptr);
  Nvfp4DequantizeParams gd = rd;
  gd.packed = d_packed.get();
  gd.scale = d_scale.get();
  gd.scale_2 = d_scale_2.get();
  gd.y = d_y.get();
  launch_nvfp4_dequantize(gd, nullptr);

  CHECK(count_mismatches(d_scale.download(), ref_scale, "scale") == 0);
  CHECK(count_mismatches(d_packed.download(), ref_packed, "packed") == 0);
  CHECK(d_nonfinite.download()[0] == ref_nonfinite);
  CHECK(count_mismatches(d_y.download(), ref_y, "dequantized", Exact::kNanEqual) == 0);
  if (in == Input::kNonFinite) CHECK(ref_nonfinite > 0);
}

// The kernel's fast path encodes two elements at once from per-scale-byte bounds; this sweeps
// every finite BF16 magnitude (both signs) under many block scales and three scale_2 values.
TEST_CASE("nvfp4 quantize: every finite BF16 under many block scales, bit-exact", "[gpu][nvfp4]") {
  const float scale_2 = GENERATE(1.0f / 64, 0.01f, 3.3e-5f);
  INFO("scale_2 " << scale_2);
  // Each block: its amax A first, then 15 sweep values of magnitude <= A (alternating sign).
  std::vector<uint16_t> x;
  for (uint32_t e = 1; e <= 254; e += 5) {
    const uint16_t amax = static_cast<uint16_t>((e << 7) | 0x40);
    for (uint32_t m = 0; m <= amax;) {
      x.push_back(amax);
      for (int i = 0; i < 15; ++i, ++m) {
        const uint32_t v = std::min<uint32_t>(m, amax);
        x.push_back(static_cast<uint16_t>(v | ((m & 1) ? 0x8000u : 0u)));
      }
    }
  }
  const int64_t n_cols = 4096, n = static_cast<int64_t>(x.size());
  const int64_t n_rows = qf::ceil_div(n, n_cols);
  x.resize(static_cast<size_t>(n_rows * n_cols), 0);  // zero blocks pad the last row
  const size_t n_elems = x.size();

  std::vector<uint8_t> ref_packed(n_elems / 2), ref_scale(n_elems / 16);
  uint64_t ref_nonfinite = 0;
  float h_scale_2 = scale_2;
  Nvfp4QuantizeParams rp;
  rp.x = x.data();
  rp.n_rows = n_rows;
  rp.n_cols = n_cols;
  rp.scale_2 = &h_scale_2;
  rp.packed = ref_packed.data();
  rp.scale = ref_scale.data();
  rp.n_nonfinite = &ref_nonfinite;
  nvfp4_quantize_ref(rp);

  DeviceArray<uint16_t> d_x(x);
  DeviceArray<float> d_scale_2(std::vector<float>{scale_2});
  DeviceArray<uint8_t> d_packed(n_elems / 2), d_scale(n_elems / 16);
  DeviceArray<uint64_t> d_nonfinite(1);
  Nvfp4QuantizeParams gp = rp;
  gp.x = d_x.get();
  gp.scale_2 = d_scale_2.get();
  gp.packed = d_packed.get();
  gp.scale = d_scale.get();
  gp.n_nonfinite = d_nonfinite.get();
  launch_nvfp4_quantize(gp, nullptr);
  CHECK(count_mismatches(d_scale.download(), ref_scale, "scale") == 0);
  CHECK(count_mismatches(d_packed.download(), ref_packed, "packed") == 0);
  CHECK(d_nonfinite.download()[0] == 0);
  CHECK(ref_nonfinite == 0);
}

TEST_CASE("nvfp4 amax and scale_2: GPU equals reference", "[gpu][nvfp4]") {
  const int64_t n_elems = GENERATE(int64_t{1}, int64_t{7}, int64_t{4096}, int64_t{1000003});
  const bool with_special = GENERATE(false, true);
  std::mt19937 rng(static_cast<uint32_t>(n_elems));
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> f(static_cast<size_t>(n_elems));
  for (auto& v : f) v = normal(rng);
  if (with_special) f[rng() % f.size()] = std::numeric_limits<float>::infinity();
  std::vector<uint16_t> b;
  for (float v : f) b.push_back(float_to_bf16(v));
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    INFO("n_elems " << n_elems << " dtype " << dtype_name(dtype));
    const void* host = dtype == DType::kBF16 ? static_cast<const void*>(b.data()) : f.data();
    float ref_amax = 0;
    uint64_t ref_count = 0;
    Nvfp4AmaxParams rp;
    rp.x = host;
    rp.dtype = dtype;
    rp.n_elems = n_elems;
    rp.amax = &ref_amax;
    rp.n_nonfinite = &ref_count;
    nvfp4_amax_ref(rp);
    rp.accumulate = true;  // twice: max is idempotent, the count doubles
    nvfp4_amax_ref(rp);

    DeviceArray<uint16_t> d_b(b);
    DeviceArray<float> d_f(f), d_amax(1), d_scale_2(1);
    DeviceArray<uint64_t> d_count(1);
    Nvfp4AmaxParams gp = rp;
    gp.x = dtype == DType::kBF16 ? static_cast<const void*>(d_b.get()) : d_f.get();
    gp.amax = d_amax.get();
    gp.n_nonfinite = d_count.get();
    gp.accumulate = false;
    launch_nvfp4_amax(gp, nullptr);
    gp.accumulate = true;
    launch_nvfp4_amax(gp, nullptr);
    CHECK(count_mismatches(d_amax.download(), std::vector<float>{ref_amax}, "amax",
                           Exact::kNanEqual) == 0);
    CHECK(d_count.download()[0] == ref_count);
    for (auto div : {Nvfp4ScaleDivision::kTrueDivide, Nvfp4ScaleDivision::kReciprocalMultiply}) {
      launch_nvfp4_scale_2(d_amax.get(), d_scale_2.get(), div, nullptr);
      const std::vector<float> want = {nvfp4_scale_from_amax(ref_amax, div)};
      CHECK(count_mismatches(d_scale_2.download(), want, "scale_2", Exact::kNanEqual) == 0);
    }
  }
}

TEST_CASE("mxfp4 -> nvfp4 cast: GPU bit-exact vs reference", "[gpu][mxfp4]") {
  const auto shape =
      GENERATE(std::pair<int64_t, int64_t>{1, 32}, std::pair<int64_t, int64_t>{5, 96},
               std::pair<int64_t, int64_t>{64, 4096}, std::pair<int64_t, int64_t>{2048, 4096},
               // 257 blocks per row, several grid-stride steps: step loop and tail.
               std::pair<int64_t, int64_t>{2053, 8224});
  // 0: inside the window; 1: spread with far-below and zero bytes; 2: NaN/overflow bytes;
  // 3: shared k_max with a sibling that has larger exponents.
  const int scales = GENERATE(0, 1, 2, 3);
  const int64_t n_rows = shape.first, n_cols = shape.second;
  const size_t n_packed = static_cast<size_t>(n_rows * n_cols / 2);
  const size_t n_scales = static_cast<size_t>(n_rows * n_cols / 32);
  INFO("shape " << n_rows << "x" << n_cols << " scales class " << scales);
  std::mt19937 rng(static_cast<uint32_t>(n_packed + scales));
  std::vector<uint8_t> packed(n_packed), e8m0(n_scales);
  for (auto& v : packed) v = static_cast<uint8_t>(rng());
  for (auto& s : e8m0) {
    switch (scales) {
      case 0:
        s = static_cast<uint8_t>(110 + rng() % 18);
        break;
      case 1:
        s = static_cast<uint8_t>(rng() % 4 == 0 ? 0 : 90 + rng() % 40);
        break;
      case 2:
        s = static_cast<uint8_t>(rng() % 3 == 0 ? 254 + rng() % 2 : 100 + rng() % 30);
        break;
      default:
        s = static_cast<uint8_t>(100 + rng() % 20);
        break;
    }
  }
  uint32_t self_max = 0, pair_max = scales == 3 ? 135u : 0u;
  Mxfp4E8m0MaxParams mp;
  mp.e8m0 = e8m0.data();
  mp.n_scales = static_cast<int64_t>(n_scales);
  mp.e8m0_max = &self_max;
  mxfp4_e8m0_max_ref(mp);

  std::vector<uint8_t> ref_packed(n_packed), ref_scale(n_scales * 2);
  float ref_scale_2 = 0;
  std::vector<uint64_t> ref_counts(kMxfp4CountSlots);
  Mxfp4ToNvfp4Params rp;
  rp.packed = packed.data();
  rp.e8m0 = e8m0.data();
  rp.n_rows = n_rows;
  rp.n_cols = n_cols;
  rp.e8m0_max = &self_max;
  rp.e8m0_max_pair = scales == 3 ? &pair_max : nullptr;
  rp.out_packed = ref_packed.data();
  rp.out_scale = ref_scale.data();
  rp.out_scale_2 = &ref_scale_2;
  rp.counts = ref_counts.data();
  mxfp4_to_nvfp4_ref(rp);

  DeviceArray<uint8_t> d_packed(packed), d_e8m0(e8m0), d_out_packed(n_packed),
      d_out_scale(n_scales * 2);
  DeviceArray<uint32_t> d_max(1), d_pair(std::vector<uint32_t>{pair_max});
  DeviceArray<float> d_scale_2(1);
  DeviceArray<uint64_t> d_counts(kMxfp4CountSlots);
  Mxfp4E8m0MaxParams gm = mp;
  gm.e8m0 = d_e8m0.get();
  gm.e8m0_max = d_max.get();
  launch_mxfp4_e8m0_max(gm, nullptr);
  CHECK(d_max.download()[0] == self_max);
  Mxfp4ToNvfp4Params gp = rp;
  gp.packed = d_packed.get();
  gp.e8m0 = d_e8m0.get();
  gp.e8m0_max = d_max.get();
  gp.e8m0_max_pair = scales == 3 ? d_pair.get() : nullptr;
  gp.out_packed = d_out_packed.get();
  gp.out_scale = d_out_scale.get();
  gp.out_scale_2 = d_scale_2.get();
  gp.counts = d_counts.get();
  launch_mxfp4_to_nvfp4(gp, nullptr);

  CHECK(count_mismatches(d_out_scale.download(), ref_scale, "scale") == 0);
  CHECK(count_mismatches(d_out_packed.download(), ref_packed, "packed") == 0);
  CHECK(count_mismatches(d_scale_2.download(), std::vector<float>{ref_scale_2}, "scale_2",
                         Exact::kNanEqual) == 0);
  CHECK(count_mismatches(d_counts.download(), ref_counts, "counts") == 0);
}
