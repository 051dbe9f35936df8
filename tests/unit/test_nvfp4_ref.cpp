// NVFP4 reference quantizer (kernels/nvfp4_quantize_ref.cpp) and scale math
// (numerics/nvfp4.hpp): golden bytes, edge blocks, error bounds, NaN/Inf policy, fast path.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "kernels/nvfp4_quantize.cuh"
#include "numerics/nvfp4.hpp"
#include "tests/nvfp4_test_util.hpp"

using namespace qf;
using namespace qf::kernels;
using namespace qf::numerics;
using qf::test::Mismatches;

namespace {

// Dequantized error allowed per element, in units of the block divisor d = scale * scale_2:
// half the E2M1 step around |x|/d (0.25 below 2, 0.5 below 4, 1 up to 6), plus float rounding
// of the division and of the decode product (a few ulps, relative).
constexpr float kHalfStepBelow2 = 0.25f;
constexpr float kHalfStepBelow4 = 0.5f;
constexpr float kHalfStepTo6 = 1.0f;
constexpr float kRoundingSlack = 1e-6f;
// NMSE of NVFP4 on N(0,1) data with the tensor's own amax (measured 0.0091), with margin.
constexpr double kMaxNmseNormal = 0.011;

struct Quantized {
  std::vector<uint8_t> packed, scale;
  uint64_t n_nonfinite = 0;
};

Quantized quantize(const std::vector<uint16_t>& x, int64_t n_rows, int64_t n_cols, float scale_2) {
  Quantized q;
  q.packed.assign(x.size() / 2, 0xAA);
  q.scale.assign(x.size() / 16, 0xAA);
  Nvfp4QuantizeParams p;
  p.x = x.data();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.scale_2 = &scale_2;
  p.packed = q.packed.data();
  p.scale = q.scale.data();
  p.n_nonfinite = &q.n_nonfinite;
  nvfp4_quantize_ref(p);
  return q;
}

std::vector<float> dequantize(const Quantized& q, int64_t n_rows, int64_t n_cols, float scale_2) {
  std::vector<float> y(static_cast<size_t>(n_rows * n_cols));
  Nvfp4DequantizeParams p;
  p.packed = q.packed.data();
  p.scale = q.scale.data();
  p.scale_2 = &scale_2;
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.y = y.data();
  nvfp4_dequantize_ref(p);
  return y;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out;
  for (float f : v) out.push_back(float_to_bf16(f));
  return out;
}

uint8_t code_at(const std::vector<uint8_t>& packed, size_t i) {
  return i % 2 == 0 ? e2m1_unpack_lo(packed[i / 2]) : e2m1_unpack_hi(packed[i / 2]);
}

}  // namespace

TEST_CASE("golden bytes: nibble order, scale placement, global scale", "[nvfp4]") {
  // scale_2 = 0.5 (amax 1344). Block A: amax 6 -> s = 6 / (6 * 0.5) = 2 (E4M3 0x40), divisor 1,
  // so every E2M1 value maps to its own code. Block B: amax 1.5 -> s = 0.5 (0x30), divisor 0.25:
  // y = 6, 0.5, 0.25 (tie -> 0), 0.75 (tie -> 1.0), tiny negative (-> 8), 1.25 (tie -> 1.0),
  // 1.75 (-> 2), 2.5 (tie -> 2), 3.5 (-> 4), 5 (tie -> 4), 5.1875 (-> 6), 1, -1, 3, 4, -6.
  const std::vector<float> block_a = {0,     0.5f, 1,     1.5f, 2,  3,  4,  6,
                                      -0.5f, -1,   -1.5f, -2,   -3, -4, -6, -0.0f};
  const std::vector<float> block_b = {1.5f,    0.125f, 0.0625f, 0.1875f, -0.01f, 0.3125f,
                                      0.4375f, 0.625f, 0.875f,  1.25f,   1.3f,   0.25f,
                                      -0.25f,  0.75f,  1.0f,    -1.5f};
  const uint8_t bytes_a[8] = {0x10, 0x32, 0x54, 0x76, 0xA9, 0xCB, 0xED, 0x0F};
  const uint8_t bytes_b[8] = {0x17, 0x20, 0x28, 0x44, 0x66, 0x27, 0x5A, 0xF6};
  std::vector<float> x = block_a;  // row 0: A B, row 1: B A
  x.insert(x.end(), block_b.begin(), block_b.end());
  x.insert(x.end(), block_b.begin(), block_b.end());
  x.insert(x.end(), block_a.begin(), block_a.end());
  const std::vector<uint16_t> xb = to_bf16(x);

  CHECK(qf::test::bf16_amax_ref(xb) == 6.0f);
  CHECK(nvfp4_scale_from_amax(2688.0f, Nvfp4ScaleDivision::kTrueDivide) == 1.0f);
  CHECK(nvfp4_scale_from_amax(1344.0f, Nvfp4ScaleDivision::kTrueDivide) == 0.5f);
  CHECK(nvfp4_scale_from_amax(1344.0f, Nvfp4ScaleDivision::kReciprocalMultiply) == 0.5f);

  const Quantized q = quantize(xb, 2, 32, 0.5f);
  const std::vector<uint8_t> want_scale = {0x40, 0x30, 0x30, 0x40};
  CHECK(q.scale == want_scale);
  std::vector<uint8_t> want_packed(bytes_a, bytes_a + 8);
  want_packed.insert(want_packed.end(), bytes_b, bytes_b + 8);
  want_packed.insert(want_packed.end(), bytes_b, bytes_b + 8);
  want_packed.insert(want_packed.end(), bytes_a, bytes_a + 8);
  for (size_t i = 0; i < want_packed.size(); ++i) {
    INFO("byte " << i);
    CHECK(static_cast<int>(q.packed[i]) == static_cast<int>(want_packed[i]));
  }
  CHECK(q.n_nonfinite == 0);
  // Dequantized block A is exact (divisor 1); -0.0 comes back as +0.
  const std::vector<float> y = dequantize(q, 2, 32, 0.5f);
  for (int i = 0; i < 16; ++i) CHECK(y[i] == block_a[i]);
  CHECK(y[32 + 16] == 0.0f);
}

TEST_CASE("zero and single-non-zero blocks", "[nvfp4]") {
  std::vector<float> x(64, 0.0f);
  x[16 + 5] = 3.0f;  // block 1 only
  const std::vector<uint16_t> xb = to_bf16(x);
  const float scale_2 =
      nvfp4_scale_from_amax(qf::test::bf16_amax_ref(xb), Nvfp4ScaleDivision::kTrueDivide);
  const Quantized q = quantize(xb, 1, 64, scale_2);
  // All-zero block: s = 0 -> 1.0 (nvfp4_tensor.py:198) = E4M3 0x38, codes 0.
  CHECK(q.scale[0] == kE4m3CodeOne);
  CHECK(q.scale[2] == kE4m3CodeOne);
  CHECK(q.scale[3] == kE4m3CodeOne);
  // The tensor's amax block: s = 3 / (6 * 3/2688) ~ 448 -> 0x7E; 3 / (448 * scale_2) ~ 6 -> 7.
  CHECK(q.scale[1] == kE4m3MaxCode);
  for (size_t i = 0; i < 64; ++i) CHECK(code_at(q.packed, i) == (i == 21 ? 7 : 0));
}

TEST_CASE("values on the E2M1 rounding bounds", "[nvfp4]") {
  // scale_2 = 1/64 and block amax 6 give s = 64 (0x68) and divisor exactly 1, so y = x.
  const float up = 1.0f / 512;  // BF16 neighbours used below are exact in BF16
  const std::vector<float> x = {6,
                                0.25f,
                                0.75f,
                                1.25f,
                                1.75f,
                                2.5f,
                                3.5f,
                                5,
                                0.25f + up,
                                0.75f - 2 * up,
                                1.25f + 4 * up,
                                1.75f - 4 * up,
                                2.5f + 8 * up,
                                3.5f - 8 * up,
                                5 + 16 * up,
                                -0.25f};
  const std::vector<uint8_t> want = {7, 0, 2, 2, 4, 4, 6, 6, 1, 1, 3, 3, 5, 5, 7, 8};
  const std::vector<uint16_t> xb = to_bf16(x);
  for (size_t i = 0; i < x.size(); ++i) REQUIRE(bf16_to_float(xb[i]) == x[i]);
  const Quantized q = quantize(xb, 1, 16, 1.0f / 64);
  CHECK(q.scale[0] == 0x68);
  for (size_t i = 0; i < x.size(); ++i) {
    INFO("x = " << x[i]);
    CHECK(static_cast<int>(code_at(q.packed, i)) == static_cast<int>(want[i]));
  }
}

TEST_CASE("tiny negatives give code 8, -0.0 gives code 0", "[nvfp4]") {
  std::vector<float> x(16, 0.0f);
  x[0] = 4.0f;
  x[1] = -0.001f;
  x[2] = -0.0f;
  x[3] = -1e-30f;
  const Quantized q = quantize(to_bf16(x), 1, 16, 1.0f / 64);
  CHECK(code_at(q.packed, 1) == 8);
  CHECK(code_at(q.packed, 2) == 0);
  CHECK(code_at(q.packed, 3) == 8);
}

TEST_CASE("block scale clamps to 448 and to 2^-9", "[nvfp4]") {
  std::vector<float> x(32, 0.0f);
  x[0] = 100.0f;  // block 0: 100 / (6e-4) >> 448
  x[1] = -50.0f;
  x[16] = 1e-4f;  // block 1: 1e-4 / 6e-4 in range...
  const float scale_2 = 1e-4f;
  Quantized q = quantize(to_bf16(x), 1, 32, scale_2);
  CHECK(q.scale[0] == kE4m3MaxCode);
  CHECK(code_at(q.packed, 0) == 7);   // saturates to 6
  CHECK(code_at(q.packed, 1) == 15);  // -6
  CHECK(e4m3_to_float(q.scale[1]) ==
        e4m3_to_float(float_to_e4m3(bf16_to_float(float_to_bf16(1e-4f)) / (6.0f * scale_2))));
  // Tiny amax against a large scale_2: s = 1e-4 / 6 < 2^-9 -> 2^-9 (0x01).
  q = quantize(to_bf16(x), 1, 32, 1.0f);
  CHECK(q.scale[1] == 0x01);
  CHECK(code_at(q.packed, 16) == 0);  // 1e-4 * 512 = 0.05 -> 0
}

TEST_CASE("random data: dequantized error within the E2M1 half step", "[nvfp4]") {
  const int kind = GENERATE(0, 1);  // 0: N(0,1); 1: Student-t(2) with planted outliers
  const int64_t n_rows = 64, n_cols = 512;
  std::mt19937 rng(1234 + kind);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::student_t_distribution<float> heavy(2.0f);
  std::vector<float> xf(static_cast<size_t>(n_rows * n_cols));
  for (auto& v : xf) v = kind == 0 ? normal(rng) : 0.02f * heavy(rng);
  if (kind == 1) {
    for (int i = 0; i < 20; ++i) xf[rng() % xf.size()] = (i % 2 ? 1 : -1) * 40.0f * (i + 1);
  }
  const std::vector<uint16_t> x = to_bf16(xf);
  for (auto division : {Nvfp4ScaleDivision::kTrueDivide, Nvfp4ScaleDivision::kReciprocalMultiply}) {
    const float scale_2 = nvfp4_scale_from_amax(qf::test::bf16_amax_ref(x), division);
    const Quantized q = quantize(x, n_rows, n_cols, scale_2);
    const std::vector<float> y = dequantize(q, n_rows, n_cols, scale_2);
    double err2 = 0, ref2 = 0;
    Mismatches far("dequantized (want: x) beyond the bound");
    for (size_t i = 0; i < x.size(); ++i) {
      const float xi = bf16_to_float(x[i]);
      const float d = nvfp4_block_divisor(q.scale[i / 16], scale_2);
      const float r = std::fabs(xi) / d;
      const float half_step = r < 2 ? kHalfStepBelow2 : r < 4 ? kHalfStepBelow4 : kHalfStepTo6;
      const float bound = d * half_step + kRoundingSlack * (std::fabs(xi) + d);
      far.check(!(std::fabs(xi - y[i]) > bound), i, y[i], xi);
      err2 += double(xi - y[i]) * (xi - y[i]);
      ref2 += double(xi) * xi;
    }
    CHECK(far.count() == 0);
    if (kind == 0) CHECK(err2 / ref2 < kMaxNmseNormal);
    // No block scale saturates when scale_2 comes from the tensor's own amax.
    for (uint8_t s : q.scale) CHECK(e4m3_to_float(s) <= 448.0f);
  }
}

TEST_CASE("NaN and Inf are counted; outputs follow ModelOpt's propagation", "[nvfp4]") {
  std::vector<uint16_t> x = to_bf16(std::vector<float>(48, 0.5f));
  x[3] = 0x7FC0;   // NaN in block 0
  x[17] = 0x7F80;  // +Inf in block 1
  x[18] = 0xFF80;  // -Inf in block 1
  float amax = 0;
  uint64_t n_nonfinite = 0;
  Nvfp4AmaxParams ap;
  ap.x = x.data();
  ap.n_elems = 48;
  ap.amax = &amax;
  ap.n_nonfinite = &n_nonfinite;
  nvfp4_amax_ref(ap);
  CHECK(std::isnan(amax));
  CHECK(n_nonfinite == 3);
  const Quantized q = quantize(x, 1, 48, 0.01f);
  CHECK(q.n_nonfinite == 3);
  CHECK(q.scale[0] == kE4m3NanCode);  // NaN block amax -> NaN scale
  for (int i = 0; i < 16; ++i) CHECK(code_at(q.packed, i) == 7);
  CHECK(q.scale[1] == kE4m3MaxCode);  // Inf amax -> clamp to 448
  CHECK(code_at(q.packed, 17) == 7);
  CHECK(code_at(q.packed, 18) == 15);
  // scale_2 = 0 (an all-zero tensor's own amax): 0/0 is NaN, so ModelOpt would write NaN scales.
  // The byte is 0x7F on every host (x86 makes 0/0 a negative NaN); callers must refuse it.
  const Quantized z = quantize(to_bf16(std::vector<float>(16, 0.0f)), 1, 16, 0.0f);
  CHECK(z.scale[0] == kE4m3NanCode);
}

TEST_CASE("amax reference: dtypes, tail, accumulate", "[nvfp4]") {
  std::vector<float> f = {1.0f, -3.5f, 2.0f, -0.0f, 0.25f};
  float amax = -1;
  uint64_t n_nonfinite = 7;
  Nvfp4AmaxParams p;
  p.x = f.data();
  p.dtype = DType::kF32;
  p.n_elems = 5;
  p.amax = &amax;
  p.n_nonfinite = &n_nonfinite;
  nvfp4_amax_ref(p);
  CHECK(amax == 3.5f);
  CHECK(n_nonfinite == 0);
  const std::vector<uint16_t> b = to_bf16({-7.0f, std::numeric_limits<float>::infinity()});
  p.x = b.data();
  p.dtype = DType::kBF16;
  p.n_elems = 1;
  p.accumulate = true;
  nvfp4_amax_ref(p);
  CHECK(amax == 7.0f);
  p.n_elems = 2;
  nvfp4_amax_ref(p);
  CHECK(std::isinf(amax));
  CHECK(n_nonfinite == 1);
  p.dtype = DType::kF16;
  CHECK_THROWS_AS(nvfp4_amax_ref(p), Error);
}

TEST_CASE("scale_2 rounding: true division vs reciprocal multiply", "[nvfp4]") {
  // Every positive finite BF16 amax: the two torch evaluations differ in ~21% of cases.
  int n_total = 0, n_differ = 0;
  float first_differ = 0;
  for (uint32_t bits = 1; bits < 0x7F80; ++bits) {
    const float amax = bf16_to_float(static_cast<uint16_t>(bits));
    const float a = nvfp4_scale_from_amax(amax, Nvfp4ScaleDivision::kTrueDivide);
    const float b = nvfp4_scale_from_amax(amax, Nvfp4ScaleDivision::kReciprocalMultiply);
    CHECK(a == amax / 2688.0f);
    ++n_total;
    if (a != b) {
      if (n_differ++ == 0) first_differ = amax;
      CHECK(std::fabs(a - b) <= std::max(std::fabs(a) * 0x1p-23f, 0x1p-149f));  // one ulp
    }
  }
  INFO("first differing amax " << first_differ);
  CHECK(n_differ > n_total / 10);
  CHECK(n_differ < n_total / 3);
}

TEST_CASE("input_scale: DS-V4 raw amax vs HF export_amax rule", "[nvfp4]") {
  const auto div = Nvfp4ScaleDivision::kTrueDivide;
  CHECK(nvfp4_input_scale(2688.0f, div) == 1.0f);
  CHECK(nvfp4_input_scale(0.0f, div) == 0.0f);
  CHECK(nvfp4_input_scale_hf_export(0.0f, div) == 1.0f / 448.0f);  // amax 0 -> maxbound 6
  CHECK(nvfp4_export_amax(std::nanf("")) == 6.0f);
  CHECK(nvfp4_export_amax(std::numeric_limits<float>::infinity()) ==
        std::numeric_limits<float>::max());
  CHECK(nvfp4_export_amax(1e-40f) == std::numeric_limits<float>::min());
  CHECK(nvfp4_export_amax(3.0f) == 3.0f);
}

TEST_CASE("division-free BF16 encoding equals nvfp4_encode for every BF16", "[nvfp4]") {
  std::mt19937 rng(99);
  std::vector<float> divisors;
  // E4M3 scale times scale_2 over the whole fast-path range (random mantissas, and powers of two,
  // which put exact ties on the BF16 grid).
  for (int i = 0; i < 400; ++i) {
    const uint8_t s = static_cast<uint8_t>(1 + rng() % 126);
    const float mantissa = rng() % 2 ? 1.0f : 1.0f + (rng() & 0xFFFFFF) * 0x1p-24f;
    const float scale_2 = std::ldexp(mantissa, -120 + static_cast<int>(rng() % 135));
    divisors.push_back(nvfp4_block_divisor(s, scale_2));
  }
  for (float d : {0x1p-124f, 0x1p16f, 1.0f, 0.75f, 3.0f / 7, 0x1.fffffep-1f, 448.0f / 2688}) {
    divisors.push_back(d);
  }
  Nvfp4Bf16Bounds bounds{};
  int n_tested = 0;
  for (float d : divisors) {
    if (!nvfp4_bf16_bounds(d, &bounds)) {
      CHECK((d < 0x1p-124f || d > 0x1p16f));
      continue;
    }
    ++n_tested;
    Mismatches m("nvfp4_encode_bf16 (want: nvfp4_encode) of BF16 code", 0, 3);
    for (uint32_t x = 0; x <= 0xFFFF; ++x) {
      m.expect(x, nvfp4_encode_bf16(static_cast<uint16_t>(x), bounds),
               nvfp4_encode(bf16_to_float(static_cast<uint16_t>(x)), d));
    }
    INFO("divisor " << d);
    CHECK(m.count() == 0);
  }
  CHECK(n_tested > 300);
  CHECK_FALSE(nvfp4_bf16_bounds(0x1p-125f, &bounds));
  CHECK_FALSE(nvfp4_bf16_bounds(0x1.000002p16f, &bounds));
  CHECK_FALSE(nvfp4_bf16_bounds(std::nanf(""), &bounds));
}

TEST_CASE("the GPU kernel's block routine equals the reference loop", "[nvfp4]") {
  // nvfp4_quantize_block_bf16 is what nvfp4_quantize_kernel runs per thread; check it here on
  // the CPU over the input classes the GPU test uses, including both of its paths.
  const int kind = GENERATE(0, 1, 2, 3, 4);
  std::mt19937 rng(77 + kind);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float magnitude[] = {1.0f, 1e-38f, 1e30f, 1.0f, 1.0f};
  std::vector<uint16_t> x(64 * 256);
  for (auto& v : x) v = float_to_bf16(magnitude[kind] * normal(rng));
  if (kind == 1) {
    for (int i = 0; i < 500; ++i) x[rng() % x.size()] = static_cast<uint16_t>(rng() % 0x80);
  }
  if (kind == 3) {
    const uint16_t specials[] = {0x7FC0, 0xFFC0, 0x7F80, 0xFF80, 0x0000, 0x8000};
    for (int i = 0; i < 300; ++i) x[rng() % x.size()] = specials[rng() % 6];
  }
  float scale_2 =
      nvfp4_scale_from_amax(qf::test::bf16_amax_ref(x), Nvfp4ScaleDivision::kTrueDivide);
  if (kind == 3) scale_2 = 0.01f;
  if (kind == 4) scale_2 /= 16;  // saturating block scales
  const Quantized q = quantize(x, 64, 256, scale_2);
  uint32_t n_nonfinite = 0;
  // A block differs in its scale or its codes; shown: its scale and the reference's.
  Mismatches blocks("block scale", 0, 3);
  for (size_t b = 0; b < q.scale.size(); ++b) {
    uint32_t words[8], packed[2];
    std::memcpy(words, &x[16 * b], sizeof(words));
    const uint8_t scale = nvfp4_quantize_block_bf16(words, scale_2, packed, &n_nonfinite);
    blocks.check(scale == q.scale[b] && std::memcmp(packed, &q.packed[8 * b], 8) == 0, b, scale,
                 q.scale[b]);
  }
  CHECK(blocks.count() == 0);
  CHECK(n_nonfinite == q.n_nonfinite);
}

TEST_CASE("shape checks", "[nvfp4]") {
  std::vector<uint16_t> x(24, 0);
  CHECK_THROWS_AS(quantize(x, 1, 24, 1.0f), Error);
  CHECK_NOTHROW(quantize(std::vector<uint16_t>{}, 0, 16, 1.0f));
}
