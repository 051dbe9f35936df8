// BF16 <-> float32 scalar codec (host and device).
// Owns the rounding rule for every BF16 we write; does not own tensor loops.
#pragma once
#include <cstdint>

#include "numerics/host_device.hpp"

namespace qf::numerics {

// Exact: BF16 is the top half of a float32.
QF_HD inline float bf16_to_float(uint16_t bits) {
  return bits_to_float(static_cast<uint32_t>(bits) << 16);
}

// Round to nearest, ties to even (same as torch's x.to(torch.bfloat16) for non-NaN input).
// Overflow rounds to +-Inf, Inf stays Inf, float32 subnormals round like any other value.
// NaN: stays NaN with its sign and top payload bits, quiet bit forced (0x0040). torch instead
// writes a canonical 0x7FC0 for every NaN; compare NaN-ness only, not NaN bits.
QF_HD inline uint16_t float_to_bf16(float x) {
  const uint32_t bits = float_to_bits(x);
  if (is_nan_bits(bits)) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t lsb = (bits >> 16) & 1u;
  return static_cast<uint16_t>((bits + 0x7FFFu + lsb) >> 16);
}

// BF16 of x as the GEMM inputs take it: round to nearest even, every NaN written as 0x7FC0.
QF_HD inline uint16_t float_to_bf16_canonical(float x) {
  return is_nan_bits(float_to_bits(x)) ? uint16_t{0x7FC0} : float_to_bf16(x);
}

// The three BF16 planes of a float (FP32-accurate activations on BF16 tensor cores):
// hi = bf16(x), mid = bf16(x - hi), lo = bf16(x - hi - mid). Each difference is exact in FP32
// (x - RNE(x) fits below hi's last bit), so hi + mid + lo carries 24 significant bits: x itself
// up to the last bit or two; x * W summed as hi*W + mid*W + lo*W (W exact in BF16, as every
// FP8/FP4/BF16 weight is) equals the FP32 product up to the summation order.
// Non-finite x, or a hi that overflowed to Inf: mid = lo = 0 (x's NaN/Inf travels in hi).
struct Bf16Planes {
  uint16_t hi, mid, lo;
};
QF_HD inline Bf16Planes float_to_bf16_planes(float x) {
  Bf16Planes p{float_to_bf16_canonical(x), 0, 0};
  const float h = bf16_to_float(p.hi);
  if ((float_to_bits(x) & 0x7F800000u) == 0x7F800000u ||
      (float_to_bits(h) & 0x7F800000u) == 0x7F800000u) {
    return p;
  }
  const float r1 = x - h;
  p.mid = float_to_bf16(r1);
  p.lo = float_to_bf16(r1 - bf16_to_float(p.mid));
  return p;
}

}  // namespace qf::numerics
