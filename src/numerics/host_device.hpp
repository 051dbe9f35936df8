// QF_HD (host+device qualifier) and float<->bits helpers shared by the scalar codecs.
// Owns nothing format-specific; every codec header includes this one.
#pragma once
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define QF_HD __host__ __device__
#else
#define QF_HD
#endif

namespace qf::numerics {

QF_HD inline uint32_t float_to_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
#endif
}

QF_HD inline float bits_to_float(uint32_t bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
#endif
}

// NaN test on the bit pattern, so it survives -ffast-math / --use_fast_math.
QF_HD inline bool is_nan_bits(uint32_t bits) { return (bits & 0x7FFFFFFFu) > 0x7F800000u; }

}  // namespace qf::numerics
