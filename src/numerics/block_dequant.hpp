// Scalar helpers for DeepSeek V4 native block formats (FORMATS.md section 4): one element of
// FP8 E4M3 x per-tile scale, or FP4 E2M1 x per-32 UE8M0 scale, to BF16. Not the tensor loops.
#pragma once
#include <cstdint>

#include "numerics/bf16.hpp"
#include "numerics/e2m1.hpp"
#include "numerics/e4m3.hpp"
#include "numerics/e8m0.hpp"
#include "numerics/host_device.hpp"

namespace qf::numerics {

// Canonical BF16 NaN written for every NaN result (as torch does), so that CPU and GPU agree
// bit for bit even though their float NaN propagation differs.
constexpr uint16_t kBf16CanonicalNan = 0x7FC0;

// Tile and group sizes of the DeepSeek native formats.
constexpr int kFp8TileRows = 128;
constexpr int kFp8TileCols = 128;
constexpr int kFp4GroupCols = 32;

// Value of a UE8M0 block scale: 2^(b - 127), NaN for 0xFF.
QF_HD inline float scale_value(uint8_t e8m0) { return e8m0_to_float(e8m0); }

// decode(code) * scale in float32, then one RNE rounding to BF16, i.e. torch's
// (w.float() * s).to(torch.bfloat16). With a power-of-two scale the product is exact unless
// it leaves the float32 range. Any NaN result (NaN code, NaN scale, 0 * Inf) -> 0x7FC0.
QF_HD inline uint16_t scaled_to_bf16(float value, float scale) {
  const float product = value * scale;
  if (is_nan_bits(float_to_bits(product))) return kBf16CanonicalNan;
  return float_to_bf16(product);
}

QF_HD inline uint16_t fp8_block_to_bf16(uint8_t code, float scale) {
  return scaled_to_bf16(e4m3_to_float(code), scale);
}

QF_HD inline uint16_t fp4_to_bf16(uint8_t code, float scale) {
  return scaled_to_bf16(e2m1_to_float(code), scale);
}

// ---- exponent-add fast path for UE8M0 scales ----------------------------------------------------
// Every E4M3 and E2M1 value is exactly a BF16, and multiplying a BF16 by 2^k only adds k to its
// exponent field while the result stays normal. The kernels use this instead of the float
// multiply; *_e8m0 below equal the generic functions for every (code, scale byte) pair, which
// tests/unit/test_dequant_ref.cpp checks exhaustively.

// Exact BF16 bits of a decoded code; NaN codes give kBf16CanonicalNan.
QF_HD inline uint16_t e4m3_to_bf16(uint8_t code) {
  return scaled_to_bf16(e4m3_to_float(code), 1.0f);
}
QF_HD inline uint16_t e2m1_to_bf16(uint8_t code) {
  return scaled_to_bf16(e2m1_to_float(code), 1.0f);
}

// v * 2^k for v from e4m3_to_bf16/e2m1_to_bf16: +-0 and NaN unchanged, else k added to the
// exponent field. Exact only while the result exponent field stays in [1, 254]: callers keep
// the scale byte inside the format's fast range below.
QF_HD inline uint16_t bf16_shift_exponent(uint16_t v, int k) {
  const uint32_t mag = v & 0x7FFFu;
  if (mag == 0 || mag > 0x7F80u) return v;
  return static_cast<uint16_t>(static_cast<int>(v) + k * 128);
}

// Scale bytes b for which bf16_shift_exponent(x_to_bf16(code), b - 127) is exact for every
// code. E4M3 values have BF16 exponent fields 118 (2^-9) .. 135 (448): 118 + k >= 1 and
// 135 + k <= 254. E2M1 values have 126 (0.5) .. 129 (6).
constexpr uint8_t kFp8FastScaleMin = 10;
constexpr uint8_t kFp8FastScaleMax = 246;
constexpr uint8_t kFp4FastScaleMin = 2;
constexpr uint8_t kFp4FastScaleMax = 252;

QF_HD inline bool fp8_scale_is_fast(uint8_t b) {
  return b >= kFp8FastScaleMin && b <= kFp8FastScaleMax;
}
QF_HD inline bool fp4_scale_is_fast(uint8_t b) {
  return b >= kFp4FastScaleMin && b <= kFp4FastScaleMax;
}

// Same result as fp8_block_to_bf16(code, scale_value(scale_e8m0)).
QF_HD inline uint16_t fp8_block_to_bf16_e8m0(uint8_t code, uint8_t scale_e8m0) {
  if (fp8_scale_is_fast(scale_e8m0)) {
    return bf16_shift_exponent(e4m3_to_bf16(code), static_cast<int>(scale_e8m0) - kE8m0Bias);
  }
  return fp8_block_to_bf16(code, scale_value(scale_e8m0));
}

// Same result as fp4_to_bf16(code, scale_value(scale_e8m0)).
QF_HD inline uint16_t fp4_to_bf16_e8m0(uint8_t code, uint8_t scale_e8m0) {
  if (fp4_scale_is_fast(scale_e8m0)) {
    return bf16_shift_exponent(e2m1_to_bf16(code), static_cast<int>(scale_e8m0) - kE8m0Bias);
  }
  return fp4_to_bf16(code, scale_value(scale_e8m0));
}

}  // namespace qf::numerics
