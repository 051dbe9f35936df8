// FP8 E4M3 "fn" (float8_e4m3fn) scalar codec: 1 sign, 4 exponent (bias 7), 3 mantissa bits.
// No Inf; 0x7F/0xFF are NaN; max finite 448 (0x7E); smallest subnormal 2^-9 (0x01).
// Owns decode and the RNE+saturate encode; does not own scale computation (NVFP4 code does).
#pragma once
#include <cstdint>

#include "numerics/host_device.hpp"

namespace qf::numerics {

constexpr float kE4m3Max = 448.0f;
constexpr uint8_t kE4m3MaxCode = 0x7E;
constexpr uint8_t kE4m3NanCode = 0x7F;

// Exact for every byte. Subnormals (exponent field 0) are m * 2^-9.
QF_HD inline float e4m3_to_float(uint8_t code) {
  const uint32_t sign = static_cast<uint32_t>(code & 0x80u) << 24;
  const uint32_t exp_field = (code >> 3) & 0xFu;
  const uint32_t man = code & 0x7u;
  if ((code & 0x7Fu) == 0x7Fu) return bits_to_float(sign | 0x7FC00000u);
  if (exp_field == 0) {
    const float mag = static_cast<float>(man) * (1.0f / 512.0f);
    return sign ? -mag : mag;
  }
  // Rebias 7 -> 127 and widen the mantissa 3 -> 23 bits.
  return bits_to_float(sign | ((exp_field + 120u) << 23) | (man << 20));
}

// Round to nearest, ties to even, including subnormals (1.0625 -> 1.0, 1.1875 -> 1.25,
// 17 -> 16, 2^-10 -> 0, 1.5*2^-9 -> 2^-8).
// Saturation: |x| >= 448 and +-Inf give +-448 (0x7E/0xFE). torch's plain cast agrees up to
// 464 (the tie above 448 rounds to even 448) but gives NaN from just above 464; ModelOpt clamps
// to [2^-9, 448] before casting, so in use saturation is what matches the reference.
// NaN -> 0x7F, or 0xFF when the NaN's sign bit is set. The sign bit is always copied, so
// -0.0 and negatives that round to zero give 0x80 (as torch does).
QF_HD inline uint8_t float_to_e4m3(float x) {
  const uint32_t bits = float_to_bits(x);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits > 0x7F800000u) return sign | kE4m3NanCode;
  if (abs_bits >= 0x43E00000u) return sign | kE4m3MaxCode;  // >= 448.0f, incl. Inf
  if (abs_bits < 0x3C800000u) {                             // < 2^-6: subnormal range
    // |x| * 2^9 is exact; the code is the integer m in [0, 8] (m = 8 is 2^-6 = code 0x08).
    const float scaled = bits_to_float(abs_bits) * 512.0f;
    uint32_t m = static_cast<uint32_t>(scaled);  // truncation
    const float frac = scaled - static_cast<float>(m);
    if (frac > 0.5f || (frac == 0.5f && (m & 1u))) ++m;
    return sign | static_cast<uint8_t>(m);
  }
  // Normal: keep 3 mantissa bits with RNE on the 20 dropped bits; a carry bumps the exponent.
  uint32_t rounded = abs_bits + 0x7FFFFu + ((abs_bits >> 20) & 1u);
  return sign | static_cast<uint8_t>((rounded >> 20) - (120u << 3));
}

}  // namespace qf::numerics
