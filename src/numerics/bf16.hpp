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

}  // namespace qf::numerics
