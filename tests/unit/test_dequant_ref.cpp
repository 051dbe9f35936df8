// CPU reference of the dequant family (kernels/dequant_ref.cpp) against hand-computed values:
// per-tile scales, partial edge tiles, UE8M0 vs F32 scales, NaN policy, nibble order, shape
// checks; and the exhaustive proof that the kernels' UE8M0 fast path equals the generic math.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "kernels/dequant.cuh"
#include "numerics/codecs.hpp"

using namespace qf::numerics;
using qf::DType;
using qf::kernels::Fp4BlockDequantParams;
using qf::kernels::Fp8BlockDequantParams;
using qf::test::Mismatches;

namespace {

constexpr uint8_t kE4m3One = 0x38;         // 1.0
constexpr uint8_t kE4m3OneAndHalf = 0x3C;  // 1.5
constexpr uint8_t kE4m3MinusThree = 0xC4;  // -3.0
constexpr uint16_t kBf16Nan = 0x7FC0;

}  // namespace

TEST_CASE("dequant: UE8M0 fast path equals the float multiply for every (code, scale) pair",
          "[dequant]") {
  Mismatches fp8("fp8_block_to_bf16_e8m0 [scale, code]", 256);
  Mismatches fp4("fp4_to_bf16_e8m0 [scale, code]", 16);
  for (int b = 0; b < 256; ++b) {
    const auto scale = static_cast<uint8_t>(b);
    for (int c = 0; c < 256; ++c) {
      const auto code = static_cast<uint8_t>(c);
      fp8.expect(uint64_t(b * 256 + c), fp8_block_to_bf16_e8m0(code, scale),
                 fp8_block_to_bf16(code, scale_value(scale)));
    }
    for (int c = 0; c < 16; ++c) {
      const auto code = static_cast<uint8_t>(c);
      fp4.expect(uint64_t(b * 16 + c), fp4_to_bf16_e8m0(code, scale),
                 fp4_to_bf16(code, scale_value(scale)));
    }
  }
  CHECK(fp8.count() == 0);
  CHECK(fp4.count() == 0);
  // The fast ranges are tight: one step outside, the exponent add is wrong for some code.
  auto fp8_shift_ok = [](int b) {
    for (int c = 0; c < 256; ++c) {
      const auto code = static_cast<uint8_t>(c);
      if (bf16_shift_exponent(e4m3_to_bf16(code), b - 127) !=
          fp8_block_to_bf16(code, scale_value(static_cast<uint8_t>(b)))) {
        return false;
      }
    }
    return true;
  };
  auto fp4_shift_ok = [](int b) {
    for (int c = 0; c < 16; ++c) {
      const auto code = static_cast<uint8_t>(c);
      if (bf16_shift_exponent(e2m1_to_bf16(code), b - 127) !=
          fp4_to_bf16(code, scale_value(static_cast<uint8_t>(b)))) {
        return false;
      }
    }
    return true;
  };
  CHECK(fp8_shift_ok(kFp8FastScaleMin));
  CHECK(fp8_shift_ok(kFp8FastScaleMax));
  CHECK(!fp8_shift_ok(kFp8FastScaleMin - 1));
  CHECK(!fp8_shift_ok(kFp8FastScaleMax + 1));
  CHECK(fp4_shift_ok(kFp4FastScaleMin));
  CHECK(fp4_shift_ok(kFp4FastScaleMax));
  CHECK(!fp4_shift_ok(kFp4FastScaleMin - 1));
  CHECK(!fp4_shift_ok(kFp4FastScaleMax + 1));
}

TEST_CASE("dequant: scalar helpers on named values", "[dequant]") {
  CHECK(scale_value(127) == 1.0f);
  CHECK(std::isnan(scale_value(0xFF)));
  CHECK(fp8_block_to_bf16(kE4m3One, 1.0f) == 0x3F80);
  CHECK(fp8_block_to_bf16(kE4m3OneAndHalf, 0.125f) == 0x3E40);  // 0.1875
  CHECK(fp8_block_to_bf16(kE4m3MinusThree, 0.5f) == 0xBFC0);    // -1.5
  CHECK(fp8_block_to_bf16(0x80, 4.0f) == 0x8000);               // -0 stays -0
  // Underflow and overflow of the product: 448 * 2^-127 = 1.75 * 2^-119 is a normal BF16;
  // 2^-6 * 2^-127 = 2^-133 is the smallest BF16 subnormal; 2^-9 * 2^-127 rounds to 0.
  CHECK(fp8_block_to_bf16(0x7E, scale_value(0)) == 0x0460);
  CHECK(fp8_block_to_bf16(0x08, scale_value(0)) == 0x0001);
  CHECK(fp8_block_to_bf16(0x01, scale_value(0)) == 0x0000);
  CHECK(fp8_block_to_bf16(0x7E, scale_value(254)) == 0x7F80);  // 448 * 2^127 -> +Inf
  CHECK(fp8_block_to_bf16(0xFE, scale_value(254)) == 0xFF80);
  // F32 scales: one float32 product, then one RNE to BF16 (torch's (w.float() * s).bfloat16()).
  CHECK(fp8_block_to_bf16(kE4m3One, 0.1f) == 0x3DCD);
  CHECK(fp8_block_to_bf16(kE4m3OneAndHalf, 0.1f) == 0x3E1A);
  // 1.25 * s: the exact product rounds to 0x3FE1, the float32 product to 0x3FE0. We follow
  // torch (float32 product first); this pins that choice.
  CHECK(fp8_block_to_bf16(0x3A, bits_to_float(0x3FB3999Au)) == 0x3FE0);
  // NaN policy: every NaN result is the canonical 0x7FC0, whatever the signs.
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(fp8_block_to_bf16(0x7F, 1.0f) == kBf16Nan);
  CHECK(fp8_block_to_bf16(0xFF, 1.0f) == kBf16Nan);
  CHECK(fp8_block_to_bf16(kE4m3MinusThree, scale_value(0xFF)) == kBf16Nan);
  CHECK(fp8_block_to_bf16(0x00, scale_value(0xFF)) == kBf16Nan);
  CHECK(fp8_block_to_bf16(0x80, inf) == kBf16Nan);  // -0 * Inf
  CHECK(fp8_block_to_bf16(kE4m3One, inf) == 0x7F80);
  CHECK(fp8_block_to_bf16(kE4m3MinusThree, -std::numeric_limits<float>::quiet_NaN()) == kBf16Nan);
  CHECK(fp4_to_bf16(0x7, 2.0f) == 0x4140);  // 6 * 2 = 12
  CHECK(fp4_to_bf16(0x9, 2.0f) == 0xBF80);  // -0.5 * 2
  CHECK(fp4_to_bf16(0x8, 2.0f) == 0x8000);  // -0
  CHECK(fp4_to_bf16(0x0, scale_value(0xFF)) == kBf16Nan);
}

TEST_CASE("dequant: FP8 reference applies one scale per 128x128 tile, partial edge tiles",
          "[dequant]") {
  // 130 x 260 -> tiles 2 x 3, the last tile row has 2 rows and the last tile column 4 columns.
  const int64_t n_rows = 130, n_cols = 260;
  REQUIRE(qf::kernels::fp8_block_scale_rows(n_rows) == 2);
  REQUIRE(qf::kernels::fp8_block_scale_cols(n_cols) == 3);
  std::vector<uint8_t> codes(n_rows * n_cols, kE4m3One);
  codes[0 * n_cols + 1] = kE4m3OneAndHalf;
  codes[129 * n_cols + 259] = kE4m3MinusThree;
  std::vector<uint16_t> out(n_rows * n_cols, 0xDEAD);
  Fp8BlockDequantParams p;
  p.codes = codes.data();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.out = out.data();

  SECTION("UE8M0 scales: tile (i, j) = 2^(3i + j)") {
    const std::vector<uint8_t> scale = {127, 128, 129, 130, 131, 132};
    p.scale = scale.data();
    p.scale_dtype = DType::kF8E8M0;
    qf::kernels::fp8_block_dequant_ref(p);
    CHECK(out[0] == 0x3F80);                   // (0, 0): 1
    CHECK(out[1] == 0x3FC0);                   // (0, 1): 1.5
    CHECK(out[127 * n_cols + 127] == 0x3F80);  // last element of tile (0, 0)
    CHECK(out[0 * n_cols + 128] == 0x4000);    // tile (0, 1): 2
    CHECK(out[0 * n_cols + 256] == 0x4080);    // tile (0, 2): 4
    CHECK(out[128 * n_cols + 0] == 0x4100);    // tile (1, 0): 8
    CHECK(out[129 * n_cols + 255] == 0x4180);  // tile (1, 1): 16
    CHECK(out[128 * n_cols + 259] == 0x4200);  // tile (1, 2): 32
    CHECK(out[129 * n_cols + 259] == 0xC2C0);  // -3 * 32 = -96
    Mismatches bf16("bf16 [row, col]", n_cols);
    for (int64_t r = 0; r < n_rows; ++r) {
      for (int64_t c = 0; c < n_cols; ++c) {
        const int k = 3 * static_cast<int>(r / 128) + static_cast<int>(c / 128);
        const float want = e4m3_to_float(codes[r * n_cols + c]) * std::ldexp(1.0f, k);
        bf16.expect(uint64_t(r * n_cols + c), out[r * n_cols + c], float_to_bf16(want));
      }
    }
    CHECK(bf16.count() == 0);
  }
  SECTION("F32 scales") {
    const std::vector<float> scale = {0.1f, 1.0f, 2.0f, -1.0f, 0.5f, 3.0f};
    p.scale = scale.data();
    p.scale_dtype = DType::kF32;
    qf::kernels::fp8_block_dequant_ref(p);
    CHECK(out[0] == 0x3DCD);                   // 1 * 0.1f
    CHECK(out[1] == 0x3E1A);                   // 1.5 * 0.1f
    CHECK(out[0 * n_cols + 128] == 0x3F80);    // 1 * 1
    CHECK(out[128 * n_cols + 0] == 0xBF80);    // 1 * -1
    CHECK(out[129 * n_cols + 259] == 0xC110);  // -3 * 3 = -9
  }
  SECTION("UE8M0 NaN scale 0xFF poisons exactly its tile") {
    const std::vector<uint8_t> scale = {127, 0xFF, 127, 127, 127, 127};
    p.scale = scale.data();
    p.scale_dtype = DType::kF8E8M0;
    qf::kernels::fp8_block_dequant_ref(p);
    CHECK(out[0 * n_cols + 127] == 0x3F80);
    CHECK(out[0 * n_cols + 128] == kBf16Nan);
    CHECK(out[127 * n_cols + 255] == kBf16Nan);
    CHECK(out[127 * n_cols + 256] == 0x3F80);
    CHECK(out[128 * n_cols + 128] == 0x3F80);
  }
}

TEST_CASE("dequant: FP4 reference, low nibble first, one UE8M0 scale per 32 elements",
          "[dequant]") {
  const int64_t n_rows = 2, n_cols = 64;
  std::vector<uint8_t> packed(n_rows * n_cols / 2, 0x00);
  packed[0] = e2m1_pack(0x1, 0xA);   // row 0, elements 0, 1: 0.5, -1
  packed[16] = e2m1_pack(0x7, 0x3);  // row 0, elements 32, 33: 6, 1.5
  packed[32] = 0x5F;                 // row 1, elements 0, 1: -6 (low), 3 (high)
  packed[63] = 0x22;                 // row 1, elements 62, 63: 1, 1
  const std::vector<uint8_t> scale = {127, 130, 120, 0xFF};  // [2, 2]: 1, 8 | 2^-7, NaN
  std::vector<uint16_t> out(n_rows * n_cols, 0xDEAD);
  Fp4BlockDequantParams p;
  p.packed = packed.data();
  p.scale = scale.data();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.out = out.data();
  qf::kernels::fp4_block_dequant_ref(p);
  CHECK(out[0] == 0x3F00);  // 0.5
  CHECK(out[1] == 0xBF80);  // -1
  CHECK(out[2] == 0x0000);  // code 0
  CHECK(out[31] == 0x0000);
  CHECK(out[32] == 0x4240);      // 6 * 8 = 48
  CHECK(out[33] == 0x4140);      // 1.5 * 8 = 12
  CHECK(out[64 + 0] == 0xBD40);  // -6 * 2^-7 = -0.046875
  CHECK(out[64 + 1] == 0x3CC0);  // 3 * 2^-7
  CHECK(out[64 + 2] == 0x0000);
  CHECK(out[64 + 32] == kBf16Nan);  // NaN scale: even code 0 gives NaN
  CHECK(out[64 + 62] == kBf16Nan);
  CHECK(out[64 + 63] == kBf16Nan);
}

TEST_CASE("dequant: shape and dtype checks", "[dequant]") {
  std::vector<uint8_t> bytes(64, 0);
  std::vector<uint16_t> out(64, 0);
  Fp4BlockDequantParams p4;
  p4.packed = bytes.data();
  p4.scale = bytes.data();
  p4.out = out.data();
  p4.n_rows = 1;
  p4.n_cols = 48;  // not a multiple of 32
  CHECK_THROWS_AS(qf::kernels::fp4_block_dequant_ref(p4), qf::Error);
  p4.n_cols = 32;
  p4.packed = nullptr;
  CHECK_THROWS_AS(qf::kernels::fp4_block_dequant_ref(p4), qf::Error);
  p4.n_rows = 0;  // empty: no pointers needed, nothing written
  CHECK_NOTHROW(qf::kernels::fp4_block_dequant_ref(p4));

  Fp8BlockDequantParams p8;
  p8.codes = bytes.data();
  p8.scale = bytes.data();
  p8.out = out.data();
  p8.n_rows = 2;
  p8.n_cols = 4;
  p8.scale_dtype = DType::kBF16;
  CHECK_THROWS_AS(qf::kernels::fp8_block_dequant_ref(p8), qf::Error);
  p8.scale_dtype = DType::kF8E8M0;
  p8.n_cols = -1;
  CHECK_THROWS_AS(qf::kernels::fp8_block_dequant_ref(p8), qf::Error);
}
