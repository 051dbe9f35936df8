// NVFP4 scale math exactly as ModelOpt computes it (FORMATS.md section 1), one scalar at a time,
// host and device: global scale, block scale, element code, dequantized value, input_scale.
// Does not own the codecs (e2m1/e4m3 headers) or any tensor loop (kernels/nvfp4_quantize*).
#pragma once
#include <cstdint>

#include "numerics/codecs.hpp"

// Unrolls the fixed-length block loops in device code (an unknown pragma for host compilers).
#ifdef __CUDA_ARCH__
#define QF_UNROLL_BLOCK _Pragma("unroll")
#else
#define QF_UNROLL_BLOCK
#endif

namespace qf::numerics {

// Sources, NVIDIA/Model-Optimizer at a2fbac7 (FORMATS.md "MO-NV" etc.):
//   nvfp4_tensor.py      = modelopt/torch/quantization/qtensor/nvfp4_tensor.py
//   numeric_utils.py     = modelopt/torch/quantization/utils/numeric_utils.py
//   tensor_quantizer.py  = modelopt/torch/quantization/nn/modules/tensor_quantizer.py
//   quantize_to_nvfp4.py = examples/deepseek/deepseek_v4/quantize_to_nvfp4.py
// Every operation below is one float32 operation on the same operands as the torch code, so the
// rounding (and the association: 6 * scale_2 is rounded before the division) is the same.

constexpr int kNvfp4BlockSize = 16;  // quantize_to_nvfp4.py:274 _NVFP4_BLOCK

// numeric_utils.py:39-40 E2M1_MAX = 6.0, E4M3_MAX = 448.0. ModelOpt always divides by the
// product `(E2M1_MAX * E4M3_MAX)` (nvfp4_tensor.py:207) or `(6.0 * 448.0)`
// (quantize_to_nvfp4.py:138), a Python float, never by 6 then 448; 2688 is exact.
constexpr float kNvfp4AmaxPerScale = 2688.0f;
// 1.0f / 2688.0f rounded to nearest = 0x1.861862p-12, as torch's CUDA kernel computes it.
constexpr float kNvfp4InvAmaxPerScale = 1.0f / 2688.0f;
// nvfp4_tensor.py:46 clamp(min=2**-9, max=E4M3_MAX): 2^-9 is the smallest E4M3 subnormal.
constexpr float kNvfp4BlockScaleMin = 0x1p-9f;
constexpr uint8_t kE4m3CodeOne = 0x38;  // 1.0, the scale of an all-zero block

// How `amax / (6 * 448)` is rounded. ModelOpt writes it as a tensor divided by a Python float:
//   nvfp4_tensor.py:207 get_weights_scaling_factor_2   amax.float() / (E2M1_MAX * E4M3_MAX)
//   nvfp4_tensor.py:221 get_activation_scaling_factor  amax.float() / (maxbound * E4M3_MAX)
//   quantize_to_nvfp4.py:138 _amax_to_nvfp4_scale_2    amax.float() / (6.0 * 448.0)
// PyTorch evaluates a tensor / CPU-scalar division differently per device:
//   CPU  (aten/src/ATen/native/cpu/BinaryOpsKernel.cpp div_true_kernel): a / b, correctly rounded;
//   CUDA (aten/src/ATen/native/cuda/BinaryDivTrueKernel.cu div_true_kernel_cuda, is_cpu_scalar
//        branch): a * (1.0f / b), "may lose one bit of precision".
// The two differ in the last bit for ~21% of BF16 amax values (tests/unit/test_nvfp4_ref.cpp).
// The DS-V4 exporter runs with --device cpu by default (quantize_to_nvfp4.py:733-736), so
// kTrueDivide reproduces it; ModelOpt's in-model export (weights on the GPU) needs
// kReciprocalMultiply. The block-scale and element divisions are tensor / tensor on one device
// and are true divisions on both devices.
enum class Nvfp4ScaleDivision : uint8_t {
  kTrueDivide = 0,          // torch on CPU (DS-V4 quantize_to_nvfp4.py default)
  kReciprocalMultiply = 1,  // torch on CUDA
};

QF_HD inline bool is_finite_float(float x) {
  return (float_to_bits(x) & 0x7F800000u) != 0x7F800000u;
}

// ---- per-tensor scales --------------------------------------------------------------------------

// weight_scale_2 (and the DS-V4 exporter's input_scale) = amax / (6 * 448) in float32.
// amax 0 gives 0; the caller must refuse that for weights (the block-scale division would be
// 0/0 = NaN in ModelOpt too).
QF_HD inline float nvfp4_scale_from_amax(float amax, Nvfp4ScaleDivision division) {
  return division == Nvfp4ScaleDivision::kTrueDivide ? amax / kNvfp4AmaxPerScale
                                                     : amax * kNvfp4InvAmaxPerScale;
}

// tensor_quantizer.py:1099-1102 export_amax, as used by the generic HF export before
// get_activation_scaling_factor: amax == 0 -> maxbound (6 for NVFP4 activations,
// tensor_quantizer.py:319-320), NaN -> maxbound, then clamp to [FLT_MIN, FLT_MAX] (+Inf ->
// FLT_MAX).
QF_HD inline float nvfp4_export_amax(float amax) {
  if (amax == 0.0f || is_nan_bits(float_to_bits(amax))) amax = kE2m1Max;
  const float lo = bits_to_float(0x00800000u);  // torch.finfo(float32).tiny = 2^-126
  const float hi = bits_to_float(0x7F7FFFFFu);  // torch.finfo(float32).max
  if (amax < lo) amax = lo;
  if (amax > hi) amax = hi;
  return amax;
}

// input_scale as the DS-V4 exporter writes it: the raw calibrated amax, no export_amax rule
// (quantize_to_nvfp4.py:479 `_amax_to_nvfp4_scale_2(input_amax)`); amax 0 gives 0.
QF_HD inline float nvfp4_input_scale(float amax, Nvfp4ScaleDivision division) {
  return nvfp4_scale_from_amax(amax, division);
}

// input_scale as the generic unified HF export writes it (export_amax, then
// nvfp4_tensor.py:221): amax 0 gives 6 / 2688 = 1/448.
QF_HD inline float nvfp4_input_scale_hf_export(float amax, Nvfp4ScaleDivision division) {
  return nvfp4_scale_from_amax(nvfp4_export_amax(amax), division);
}

// ---- per-block scale ----------------------------------------------------------------------------

// nvfp4_tensor.py:46 `.clamp(min=2**-9, max=E4M3_MAX).to(torch.float8_e4m3fn)`. NaN passes the
// clamp unchanged (torch.clamp propagates NaN) and encodes to 0x7F whatever its sign (x86 makes
// 0/0 a negative NaN, CUDA a positive one; the byte must not depend on that).
QF_HD inline uint8_t nvfp4_clamp_to_e4m3(float s) {
  if (is_nan_bits(float_to_bits(s))) return kE4m3NanCode;
  if (s < kNvfp4BlockScaleMin) s = kNvfp4BlockScaleMin;
  if (s > kE4m3Max) s = kE4m3Max;
  return float_to_e4m3(s);
}

// Block scale before the clamp, nvfp4_tensor.py:194-198:
//   per_block_scale = per_block_amax / (E2M1_MAX * weights_scaling_factor_2)
//   per_block_scale[per_block_scale == 0] = 1.0
// `E2M1_MAX * scale_2` is its own float32 multiply (a 0-d tensor times a Python float) before
// the division; block_amax = max |x| over the 16 elements (exact in any dtype).
QF_HD inline float nvfp4_block_scale_float(float block_amax, float scale_2) {
  const float denominator = kE2m1Max * scale_2;
  float s = block_amax / denominator;
  if (s == 0.0f) s = 1.0f;
  return s;
}

// The stored E4M3 weight_scale byte of one 16-element block.
QF_HD inline uint8_t nvfp4_block_scale(float block_amax, float scale_2) {
  return nvfp4_clamp_to_e4m3(nvfp4_block_scale_float(block_amax, scale_2));
}

// ---- elements -----------------------------------------------------------------------------------

// nvfp4_tensor.py:325-327: input / (weights_scaling_factor.to(float32) * weights_scaling_factor_2)
// The product is rounded once; every element of the block is divided by the same float.
QF_HD inline float nvfp4_block_divisor(uint8_t scale_code, float scale_2) {
  return e4m3_to_float(scale_code) * scale_2;
}

// nvfp4_tensor.py:335 _cast_fp4 of the scaled element (rule in numerics/e2m1.hpp).
QF_HD inline uint8_t nvfp4_encode(float x, float divisor) { return float_to_e2m1(x / divisor); }

// nvfp4_tensor.py:390-406 dequantize: per_block_scale = scale.to(float32) * double_scale, then
// e2m1_value * per_block_scale (before the final .to(dtype), which callers may apply).
QF_HD inline float nvfp4_decode(uint8_t code, uint8_t scale_code, float scale_2) {
  return e2m1_to_float(code) * (e4m3_to_float(scale_code) * scale_2);
}

// ---- division-free encoding of BF16 elements (the GPU kernel's fast path) -----------------------
// nvfp4_encode(x, d) = float_to_e2m1(fl(x / d)) only asks where fl(|x| / d) lies against the E2M1
// bounds. Round-to-nearest is monotonic, so with a = |x| and d > 0:
//   fl(a/d) >  t  <=>  a >  hi(t) * d,  hi(t) = t + ulp(t)/2   (bounds 0.25, 1.25, 2.5, 5;
//                                        a tie rounds to t, whose last bit is even)
//   fl(a/d) >= t  <=>  a >= lo(t) * d,  lo(t) = t - ulp(t-)/2  (bounds 0.75, 1.75, 3.5; the tie
//                                        rounds up to t, again the even neighbour)
// hi/lo have <= 26 significant bits and d has 24, so hi(t) * d is exact in double, and rounding
// it up to the BF16 grid gives the smallest BF16 magnitude that passes each bound.
// Sign: fl(x/d) < 0 <=> x < 0 and |x|/d > 2^-150; for d <= 2^16 that holds for every non-zero
// BF16 (>= 2^-133). NaN gives 7 with no sign bit, as float_to_e2m1.
// Valid for d in [2^-124, 2^16] (every product is a normal float); outside, use nvfp4_encode.
// tests/unit/test_nvfp4_ref.cpp checks it against nvfp4_encode for every BF16 value.
struct Nvfp4Bf16Bounds {
  uint32_t magnitude[7];  // BF16 |x| bits; magnitude index = #{k : |x| bits >= magnitude[k]}
};

QF_HD inline uint64_t double_to_bits(double x) {
#ifdef __CUDA_ARCH__
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
#endif
}

// Smallest BF16 magnitude >= c (strict: > c) for c in the normal float range.
QF_HD inline uint32_t bf16_ceil_bits(double c, bool strict) {
  const uint64_t bits = double_to_bits(c);
  // bits >> 45 = [11-bit exponent | top 7 mantissa bits] (c > 0); rebias 1023 -> 127.
  const uint32_t truncated = static_cast<uint32_t>(bits >> 45) - ((1023u - 127u) << 7);
  const bool below = (bits & ((1ull << 45) - 1)) != 0;  // c is above `truncated`
  return truncated + ((strict || below) ? 1u : 0u);
}

// Fills the bounds for divisor d; false when d is outside [2^-124, 2^16] (or NaN).
QF_HD inline bool nvfp4_bf16_bounds(float divisor, Nvfp4Bf16Bounds* out) {
  if (!(divisor >= 0x1p-124f && divisor <= 0x1p16f)) return false;
  const double d = static_cast<double>(divisor);
  // hi(t) for 0.25, 1.25, 2.5, 5 (strict); lo(t) for 0.75, 1.75, 3.5. ulp(t) = 2^(e_t - 23).
  out->magnitude[0] = bf16_ceil_bits((0.25 + 0x1p-26) * d, true);
  out->magnitude[1] = bf16_ceil_bits((0.75 - 0x1p-25) * d, false);
  out->magnitude[2] = bf16_ceil_bits((1.25 + 0x1p-24) * d, true);
  out->magnitude[3] = bf16_ceil_bits((1.75 - 0x1p-24) * d, false);
  out->magnitude[4] = bf16_ceil_bits((2.5 + 0x1p-23) * d, true);
  out->magnitude[5] = bf16_ceil_bits((3.5 - 0x1p-23) * d, false);
  out->magnitude[6] = bf16_ceil_bits((5.0 + 0x1p-22) * d, true);
  return true;
}

QF_HD inline uint8_t nvfp4_encode_bf16(uint16_t x, const Nvfp4Bf16Bounds& bounds) {
  const uint32_t a = x & 0x7FFFu;
  const uint32_t* b = bounds.magnitude;
  // #{k : a >= b[k]} over the ascending b[0..6] by binary search: 3 compares instead of 7.
  const bool ge4 = a >= b[3];
  const bool ge2_or_6 = a >= (ge4 ? b[5] : b[1]);
  const bool odd = a >= (ge4 ? (ge2_or_6 ? b[6] : b[4]) : (ge2_or_6 ? b[2] : b[0]));
  const uint32_t magnitude = (ge4 ? 4u : 0u) + (ge2_or_6 ? 2u : 0u) + (odd ? 1u : 0u);
  const bool negative = (x & 0x8000u) && a != 0 && a <= 0x7F80u;
  return static_cast<uint8_t>((negative ? 0x8u : 0x0u) | magnitude);
}

// ---- one 16-element block, as the GPU kernel runs it ------------------------------------------
// x: the block's 32 bytes as 8 little-endian words (element 2i in the low half of x[i]). Writes
// the 8 packed bytes as 2 little-endian words, adds the NaN/Inf count to *n_nonfinite and returns
// the E4M3 scale byte. Bit-identical to nvfp4_quantize_ref's loop (tests/unit/test_nvfp4_ref.cpp).
QF_HD inline uint8_t nvfp4_quantize_block_bf16(const uint32_t x[8], float scale_2,
                                               uint32_t packed[2], uint32_t* n_nonfinite) {
  // Block amax on |x| bit patterns, BF16 bits in float position (a NaN wins, like torch.amax).
  uint32_t amax_bits = 0;
  QF_UNROLL_BLOCK for (int i = 0; i < 8; ++i) {
    const uint32_t a_lo = (x[i] & 0x7FFFu) << 16, a_hi = (x[i] >> 16 & 0x7FFFu) << 16;
    amax_bits = a_lo > amax_bits ? a_lo : amax_bits;
    amax_bits = a_hi > amax_bits ? a_hi : amax_bits;
    *n_nonfinite += (a_lo >= 0x7F800000u ? 1u : 0u) + (a_hi >= 0x7F800000u ? 1u : 0u);
  }
  const uint8_t scale_code = nvfp4_block_scale(bits_to_float(amax_bits), scale_2);
  const float divisor = nvfp4_block_divisor(scale_code, scale_2);
  packed[0] = packed[1] = 0;
  Nvfp4Bf16Bounds bounds{};
  if (nvfp4_bf16_bounds(divisor, &bounds)) {  // division-free, see above
    QF_UNROLL_BLOCK for (int i = 0; i < 8; ++i) {
      const uint8_t lo = nvfp4_encode_bf16(static_cast<uint16_t>(x[i]), bounds);
      const uint8_t hi = nvfp4_encode_bf16(static_cast<uint16_t>(x[i] >> 16), bounds);
      packed[i / 4] |= static_cast<uint32_t>(e2m1_pack(lo, hi)) << (8 * (i % 4));
    }
  } else {  // the spec's division (tiny, huge or non-finite divisors)
    QF_UNROLL_BLOCK for (int i = 0; i < 8; ++i) {
      const uint8_t lo = nvfp4_encode(bf16_to_float(static_cast<uint16_t>(x[i])), divisor);
      const uint8_t hi = nvfp4_encode(bf16_to_float(static_cast<uint16_t>(x[i] >> 16)), divisor);
      packed[i / 4] |= static_cast<uint32_t>(e2m1_pack(lo, hi)) << (8 * (i % 4));
    }
  }
  return scale_code;
}

}  // namespace qf::numerics
