// FP4 E2M1 scalar codec and nibble packing (NVFP4 / MXFP4 element format).
// Code = sign (bit 3) | magnitude index (bits 0-2): 0, 0.5, 1, 1.5, 2, 3, 4, 6. Code 8 = -0.
// Owns the ModelOpt rounding rule and nibble order; does not own block scales.
#pragma once
#include <cstdint>

#include "numerics/host_device.hpp"

namespace qf::numerics {

constexpr float kE2m1Max = 6.0f;

// Low 4 bits of code are used. Exact.
QF_HD inline float e2m1_to_float(uint8_t code) {
  const uint32_t sign = static_cast<uint32_t>(code & 0x8u) << 28;
  const uint32_t exp_field = (code >> 1) & 0x3u;
  const uint32_t man = code & 0x1u;
  if (exp_field == 0) return bits_to_float(sign | (man ? 0x3F000000u : 0u));  // +-0 or +-0.5
  // value = (1 + man/2) * 2^(exp_field - 1); float32 exponent field = exp_field + 126.
  return bits_to_float(sign | ((exp_field + 126u) << 23) | (man << 22));
}

// ModelOpt's rule (modelopt/torch/quantization/qtensor/nvfp4_tensor.py, _cast_fp4):
// magnitude index = #{bounds b : |x| > b} over bounds 0.25 0.75 1.25 1.75 2.5 3.5 5, plus one
// when |x| equals an odd-position bound (0.75, 1.75, 3.5). So ties on 0.75/1.75/3.5 round up,
// ties on 0.25/1.25/2.5/5 round down (RNE on the mantissa), and |x| > 5 saturates to 6.
// Sign bit set iff x < 0: -0.0 gives code 0, a tiny negative gives code 8 (-0).
// NaN (either sign) gives code 7 (+6): ModelOpt's searchsorted places NaN after every bound
// and (NaN < 0) is false.
QF_HD inline uint8_t float_to_e2m1(float x) {
  const uint32_t bits = float_to_bits(x);
  if (is_nan_bits(bits)) return 0x7;
  const float a = bits_to_float(bits & 0x7FFFFFFFu);
  const uint8_t mag = static_cast<uint8_t>((a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) +
                                           (a > 2.5f) + (a >= 3.5f) + (a > 5.0f));
  return static_cast<uint8_t>((x < 0.0f ? 0x8u : 0x0u) | mag);
}

// Two codes per byte along the last dimension: element 2i in the low nibble, 2i+1 in the
// high nibble (ModelOpt, vLLM fp4_dequant.py, DeepSeek convert.py).
QF_HD inline uint8_t e2m1_pack(uint8_t lo, uint8_t hi) {
  return static_cast<uint8_t>(((hi & 0xFu) << 4) | (lo & 0xFu));
}
QF_HD inline uint8_t e2m1_unpack_lo(uint8_t byte) { return byte & 0xFu; }
QF_HD inline uint8_t e2m1_unpack_hi(uint8_t byte) { return byte >> 4; }

}  // namespace qf::numerics
