// Scalar pieces of ModelOpt's "lossless" MXFP4 -> NVFP4 weight cast (FORMATS.md section 1),
// host and device: k_max, scale_2 = 2^(k_max - 8), per-block amax (closed form or fallback),
// block scale, MXFP4 dequantization. The tensor loops are kernels/nvfp4_quantize{_ref.cpp,.cu}.
#pragma once
#include <cstdint>

#include "numerics/codecs.hpp"
#include "numerics/nvfp4.hpp"

namespace qf::numerics {

// Sources, NVIDIA/Model-Optimizer at a2fbac7:
//   numeric_utils.py     = modelopt/torch/quantization/utils/numeric_utils.py
//   quantize_to_nvfp4.py = examples/deepseek/deepseek_v4/quantize_to_nvfp4.py
//   mxfp4_tensor.py      = modelopt/torch/quantization/qtensor/mxfp4_tensor.py
// The cast (quantize_to_nvfp4.py:309-350 _quantize_weight_nvfp4_lossless) is:
//   1. bf16 = MXFP4 dequantization of the source (mxfp4_tensor.py:83-144);
//   2. per 16-block amax from the E8M0 scales (numeric_utils.py:104-178);
//   3. scale_2 = 2^(k_max - 8), per_block_scale = (amax / (6 * scale_2)).clamp(2^-9, 448) -> E4M3
//      (no "zero -> 1.0" step here, unlike NVFP4QTensor.get_weights_scaling_factor);
//   4. NVFP4QTensor.quantize(bf16, 16, per_block_scale, scale_2): the usual element rule.
// Consequence of step 1: a source nibble 8 (-0) dequantizes to -0.0, which _cast_fp4 writes as
// code 0 (sign bit is `x < 0`). So "bit-for-bit" holds for every nibble except 8 -> 0.

constexpr int kMxfp4BlockSize = 32;
constexpr int kE4m3PowMax = 8;   // numeric_utils.py:42 E4M3_KMAX: E4M3 holds 2^k exactly for
constexpr int kE4m3PowMin = -9;  // numeric_utils.py:43 E4M3_KMIN: k in [-9, 8]
// A block is lossless iff k_max - k_j <= 17 (quantize_to_nvfp4.py:343).
constexpr int kMxfp4LosslessSpan = kE4m3PowMax - kE4m3PowMin;

// torch.exp2(float(k)) for an integer k: exact 2^k down to the float32 subnormals, +Inf from 128.
QF_HD inline float exp2_int(int k) {
  if (k >= 128) return bits_to_float(0x7F800000u);
  if (k >= -126) return bits_to_float(static_cast<uint32_t>(k + 127) << 23);
  if (k >= -149) return bits_to_float(1u << (k + 149));
  return 0.0f;
}

// k_j = e8m0 - 127 (numeric_utils.py:73, :144).
QF_HD inline int mxfp4_exponent(uint8_t e8m0) { return static_cast<int>(e8m0) - kE8m0Bias; }

// Both k_max flavours come from the largest E8M0 byte of a tensor (a byte 0 never raises it):
// - the k_max that sets scale_2 and the lossless count: max k_j over bytes != 0, or 0 when every
//   byte is 0 (numeric_utils.py:73-80 mxfp4_to_nvfp4_global_amax, via
//   quantize_to_nvfp4.py:278-285 _kmax_from_mxfp4_scale). For a w1/w3 pair it is the max of the
//   two (quantize_to_nvfp4.py:301-305).
QF_HD inline int mxfp4_k_max(uint32_t e8m0_max_byte) {
  return e8m0_max_byte == 0 ? 0 : static_cast<int>(e8m0_max_byte) - kE8m0Bias;
}
// - the tensor-local k_max that picks closed-form vs fallback amax: the same max, but with the
//   sentinel -127 when every byte is 0 (numeric_utils.py:152-154). It is always this tensor's
//   own, even when scale_2 uses a k_max shared with a sibling.
QF_HD inline int mxfp4_k_max_local(uint32_t e8m0_max_byte) {
  return static_cast<int>(e8m0_max_byte) - kE8m0Bias;
}

// scale_2 = 2^m, m = k_max - 8 (quantize_to_nvfp4.py:331-332; 2.0**m is exact in float32 for
// every k_max an E8M0 byte can give).
QF_HD inline float mxfp4_nvfp4_scale_2(int k_max) { return exp2_int(k_max - kE4m3PowMax); }

// numeric_utils.py:155-156: delta = k - (k_max_local - 8); in range iff -9 <= delta <= 8.
QF_HD inline bool mxfp4_block_in_range(uint8_t e8m0, int k_max_local) {
  const int delta = mxfp4_exponent(e8m0) - (k_max_local - kE4m3PowMax);
  return delta >= kE4m3PowMin && delta <= kE4m3PowMax;
}

// quantize_to_nvfp4.py:342-343: lossless iff k >= k_max - 17 or e8m0 == 0 (per 32-block).
QF_HD inline bool mxfp4_block_lossless(uint8_t e8m0, int k_max) {
  return mxfp4_exponent(e8m0) >= k_max - kMxfp4LosslessSpan || e8m0 == 0;
}

// Per-block amax (numeric_utils.py:144-178), shared by both 16-halves of the 32-block:
//   in range: 6 * 2^k (:146); otherwise max_nibble * 2^k (:170-174), max_nibble = the E2M1
//   magnitude of the largest magnitude index (bits 0-2) over all 32 nibbles of the block.
QF_HD inline float mxfp4_nvfp4_block_amax(uint8_t e8m0, uint8_t max_magnitude_index,
                                          int k_max_local) {
  const float pow2_k = exp2_int(mxfp4_exponent(e8m0));
  if (mxfp4_block_in_range(e8m0, k_max_local)) return kE2m1Max * pow2_k;
  return e2m1_to_float(max_magnitude_index & 0x7u) * pow2_k;
}

// quantize_to_nvfp4.py:333-337: (per_block_amax / (E2M1_MAX * weight_scale_2))
//   .clamp(min=2**-9, max=E4M3_MAX).to(torch.float8_e4m3fn). No zero -> 1.0 step.
QF_HD inline uint8_t mxfp4_nvfp4_block_scale(float block_amax, float scale_2) {
  return nvfp4_clamp_to_e4m3(block_amax / (kE2m1Max * scale_2));
}

// One MXFP4 element as quantize_to_nvfp4.py:218-232 makes it: mxfp4_tensor.py:116-131
// sign (+-1.0) * magnitude, :137-141 times torch.exp2(e8m0 - 127), :144 .to(bfloat16).
// The product is exact unless it overflows (k = 127 with magnitude >= 2, or e8m0 = 255 -> Inf
// or NaN); code 8 gives -0.0.
QF_HD inline float mxfp4_dequantize_bf16(uint8_t code, uint8_t e8m0) {
  const float sign = (code & 0x8u) ? -1.0f : 1.0f;
  const float value = (sign * e2m1_to_float(code & 0x7u)) * exp2_int(mxfp4_exponent(e8m0));
  return bf16_to_float(float_to_bf16(value));
}

// For a block whose divisor is exactly 2^k (in range and lossless, k <= 125 so nothing
// overflows), x / divisor = +-magnitude exactly, so each output code equals the source code
// except that -0 (8) becomes +0 (0). Applies that to 8 nibbles at once.
QF_HD inline uint32_t mxfp4_codes_drop_negative_zero(uint32_t codes8) {
  const uint32_t magnitude = codes8 & 0x77777777u;
  // Bit 3 of each nibble of (magnitude + 7) is set iff the magnitude is non-zero (7 + 7 < 16,
  // so no carry crosses a nibble).
  const uint32_t keep_sign = (magnitude + 0x77777777u) & 0x88888888u;
  return codes8 & (0x77777777u | keep_sign);
}

// Largest k for which every E2M1 value times 2^k is finite in float32 (6 * 2^125 < 2^128).
constexpr int kMxfp4MaxFiniteExponent = 125;

// One 32-element MXFP4 block as the GPU kernel runs it. codes: the block's 16 bytes as 4
// little-endian words; out: the NVFP4 codes at the same nibble positions. Adds NaN/Inf dequantized
// elements to *n_nonfinite and returns the E4M3 scale byte shared by both 16-halves.
// Bit-identical to mxfp4_to_nvfp4_ref's loop (tests/unit/test_mxfp4_to_nvfp4.cpp).
QF_HD inline uint8_t mxfp4_to_nvfp4_block(const uint32_t codes[4], uint8_t e8m0, int k_max_local,
                                          float scale_2, uint32_t out[4], uint32_t* n_nonfinite) {
  uint8_t max_index = 0;  // only the fallback amax reads it
  if (!mxfp4_block_in_range(e8m0, k_max_local)) {
    QF_UNROLL_BLOCK for (int i = 0; i < 32; ++i) {
      const uint8_t index = static_cast<uint8_t>((codes[i / 8] >> (4 * (i % 8))) & 0x7u);
      max_index = index > max_index ? index : max_index;
    }
  }
  const uint8_t scale_code =
      mxfp4_nvfp4_block_scale(mxfp4_nvfp4_block_amax(e8m0, max_index, k_max_local), scale_2);
  const float divisor = nvfp4_block_divisor(scale_code, scale_2);
  const int k = mxfp4_exponent(e8m0);
  if (divisor == exp2_int(k) && k <= kMxfp4MaxFiniteExponent) {
    // x / divisor is exactly +-magnitude for every nibble: copy the codes (-0 -> +0).
    QF_UNROLL_BLOCK for (int j = 0; j < 4; ++j) out[j] = mxfp4_codes_drop_negative_zero(codes[j]);
  } else {
    QF_UNROLL_BLOCK for (int j = 0; j < 4; ++j) {
      out[j] = 0;
      QF_UNROLL_BLOCK for (int i = 0; i < 8; ++i) {
        const float x =
            mxfp4_dequantize_bf16(static_cast<uint8_t>((codes[j] >> (4 * i)) & 0xFu), e8m0);
        *n_nonfinite += is_finite_float(x) ? 0u : 1u;
        out[j] |= static_cast<uint32_t>(nvfp4_encode(x, divisor)) << (4 * i);
      }
    }
  }
  return scale_code;
}

}  // namespace qf::numerics
