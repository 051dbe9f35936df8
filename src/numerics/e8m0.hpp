// UE8M0 (float8_e8m0fnu) scalar codec: unsigned, 8 exponent bits, value 2^(b - 127).
// 0xFF is NaN; there is no zero and no sign. Owns decode/encode; not the MX block logic.
#pragma once
#include <cstdint>

#include "numerics/host_device.hpp"

namespace qf::numerics {

constexpr int kE8m0Bias = 127;
constexpr uint8_t kE8m0NanCode = 0xFF;

// Exact for every byte: b = 0 is 2^-127, a float32 subnormal (bits 0x00400000); 0xFF is NaN.
// Callers multiplying by it on a GPU must not build with flush-to-zero.
QF_HD inline float e8m0_to_float(uint8_t b) {
  if (b == kE8m0NanCode) return bits_to_float(0x7FC00000u);
  if (b == 0) return bits_to_float(0x00400000u);
  return bits_to_float(static_cast<uint32_t>(b) << 23);
}

// Same as torch's x.to(torch.float8_e8m0fnu) (c10/util/Float8_e8m0fnu.h,
// fp8e8m0fnu_from_fp32_value), bit for bit:
// - the float32 exponent field is kept and the sign is ignored (negative x acts as |x|);
// - it rounds up when the mantissa is > 0.5 (value > 1.5 * 2^e), and on exactly 1.5 * 2^e
//   rounds up for normal x and down for subnormal x ("ties to even" on the implied bit).
//   This is nearest in the linear, not the log, domain: 1.4 -> 1, 1.5 -> 2, 2.9 -> 2, 3 -> 4;
// - 0 and tiny subnormals give 0x00 (2^-127), since there is no zero;
// - NaN and +-Inf give 0xFF (NaN), and so does any finite x >= 1.5 * 2^127 (it rounds into
//   the NaN code).
QF_HD inline uint8_t float_to_e8m0(float x) {
  const uint32_t bits = float_to_bits(x);
  uint32_t exp_field = (bits >> 23) & 0xFFu;
  if (exp_field == 0xFFu) return kE8m0NanCode;
  const uint32_t man = bits & 0x7FFFFFu;
  const bool above_half = man > 0x400000u;
  const bool tie = man == 0x400000u;
  if (above_half || (tie && exp_field > 0)) ++exp_field;
  return static_cast<uint8_t>(exp_field);
}

// Exact 2^k, with k clamped to the representable [-127, 127] (never produces NaN).
QF_HD inline uint8_t e8m0_from_exponent(int k) {
  if (k < -kE8m0Bias) k = -kE8m0Bias;
  if (k > kE8m0Bias) k = kE8m0Bias;
  return static_cast<uint8_t>(k + kE8m0Bias);
}

}  // namespace qf::numerics
