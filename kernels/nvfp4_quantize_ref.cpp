// CPU references of the NVFP4 kernel family: plain loops over the scalar spec in
// numerics/nvfp4.hpp and numerics/mxfp4_to_nvfp4.hpp. No SIMD, no threads; not fast on purpose.
#include <algorithm>
#include <cstring>

#include "core/check.hpp"
#include "kernels/nvfp4_quantize.cuh"

namespace qf::kernels {

using namespace qf::numerics;

void nvfp4_check_shape(int64_t n_rows, int64_t n_cols, Nvfp4ScaleLayout layout) {
  QF_CHECK(n_rows >= 0 && n_cols >= 0, "NVFP4 shape", n_rows, "x", n_cols, "is negative");
  QF_CHECK_MULTIPLE_OF(n_cols, kNvfp4BlockSize, "NVFP4");
  QF_CHECK(layout == Nvfp4ScaleLayout::kLinear, "unsupported NVFP4 scale layout",
           static_cast<int>(layout));
}

void mxfp4_check_shape(int64_t n_rows, int64_t n_cols) {
  QF_CHECK(n_rows >= 0 && n_cols >= 0, "MXFP4 shape", n_rows, "x", n_cols, "is negative");
  QF_CHECK_MULTIPLE_OF(n_cols, kMxfp4BlockSize, "MXFP4");
}

// ---- amax ---------------------------------------------------------------------------------------

void nvfp4_amax_ref(const Nvfp4AmaxParams& p) {
  QF_CHECK(p.dtype == DType::kBF16 || p.dtype == DType::kF32, "nvfp4 amax: dtype",
           dtype_name(p.dtype), "is not BF16 or F32");
  QF_CHECK(p.n_elems >= 0 && p.amax && p.n_nonfinite && (p.x || p.n_elems == 0),
           "nvfp4 amax: bad params, n_elems", p.n_elems);
  // Compare |x| as bit patterns: for non-negative floats that is the float order, and a NaN
  // (bits above +Inf) wins, like torch.max.
  uint32_t amax_bits = p.accumulate ? float_to_bits(*p.amax) : 0u;
  uint64_t n_nonfinite = p.accumulate ? *p.n_nonfinite : 0u;
  for (int64_t i = 0; i < p.n_elems; ++i) {
    uint32_t abs_bits;
    if (p.dtype == DType::kBF16) {
      abs_bits = (static_cast<uint32_t>(static_cast<const uint16_t*>(p.x)[i]) & 0x7FFFu) << 16;
    } else {
      abs_bits = float_to_bits(static_cast<const float*>(p.x)[i]) & 0x7FFFFFFFu;
    }
    amax_bits = std::max(amax_bits, abs_bits);
    if (abs_bits >= 0x7F800000u) ++n_nonfinite;
  }
  *p.amax = bits_to_float(amax_bits);
  *p.n_nonfinite = n_nonfinite;
}

// ---- quantize -----------------------------------------------------------------------------------

void nvfp4_quantize_ref(const Nvfp4QuantizeParams& p) {
  nvfp4_check_shape(p.n_rows, p.n_cols, p.layout);
  const int64_t n_blocks_per_row = p.n_cols / kNvfp4BlockSize;
  QF_CHECK(p.scale_2 && p.n_nonfinite &&
               (p.n_rows * n_blocks_per_row == 0 || (p.x && p.packed && p.scale)),
           "nvfp4 quantize: null pointer");
  const float scale_2 = *p.scale_2;
  uint64_t n_nonfinite = 0;
  for (int64_t row = 0; row < p.n_rows; ++row) {
    for (int64_t blk = 0; blk < n_blocks_per_row; ++blk) {
      const uint16_t* x = p.x + row * p.n_cols + blk * kNvfp4BlockSize;
      // Block amax = max |x|, compared as bit patterns (torch.amax semantics: a NaN wins).
      float x_f[kNvfp4BlockSize];
      uint32_t amax_bits = 0;
      for (int i = 0; i < kNvfp4BlockSize; ++i) {
        x_f[i] = bf16_to_float(x[i]);
        const uint32_t abs_bits = float_to_bits(x_f[i]) & 0x7FFFFFFFu;
        amax_bits = std::max(amax_bits, abs_bits);
        if (abs_bits >= 0x7F800000u) ++n_nonfinite;
      }
      const float block_amax = bits_to_float(amax_bits);
      const uint8_t scale_code = nvfp4_block_scale(block_amax, scale_2);
      const float divisor = nvfp4_block_divisor(scale_code, scale_2);
      // Scale placement: Nvfp4ScaleLayout::kLinear.
      p.scale[row * n_blocks_per_row + blk] = scale_code;
      uint8_t* out = p.packed + (row * p.n_cols + blk * kNvfp4BlockSize) / 2;
      for (int i = 0; i < kNvfp4BlockSize; i += 2) {
        out[i / 2] = e2m1_pack(nvfp4_encode(x_f[i], divisor), nvfp4_encode(x_f[i + 1], divisor));
      }
    }
  }
  *p.n_nonfinite = n_nonfinite;
}

// ---- dequantize ---------------------------------------------------------------------------------

void nvfp4_dequantize_ref(const Nvfp4DequantizeParams& p) {
  nvfp4_check_shape(p.n_rows, p.n_cols, p.layout);
  QF_CHECK(p.scale_2 && (p.n_rows * p.n_cols == 0 || (p.packed && p.scale && p.y)),
           "nvfp4 dequantize: null pointer");
  const float scale_2 = *p.scale_2;
  const int64_t n_blocks_per_row = p.n_cols / kNvfp4BlockSize;
  for (int64_t row = 0; row < p.n_rows; ++row) {
    for (int64_t col = 0; col < p.n_cols; ++col) {
      const int64_t elem = row * p.n_cols + col;
      const uint8_t byte = p.packed[elem / 2];
      const uint8_t code = (col % 2 == 0) ? e2m1_unpack_lo(byte) : e2m1_unpack_hi(byte);
      const uint8_t scale_code = p.scale[row * n_blocks_per_row + col / kNvfp4BlockSize];
      p.y[elem] = nvfp4_decode(code, scale_code, scale_2);
    }
  }
}

// ---- lossless MXFP4 -> NVFP4 cast ---------------------------------------------------------------

void mxfp4_e8m0_max_ref(const Mxfp4E8m0MaxParams& p) {
  QF_CHECK(p.n_scales >= 0 && p.e8m0_max && (p.e8m0 || p.n_scales == 0),
           "mxfp4 e8m0 max: bad params, n_scales", p.n_scales);
  uint32_t m = p.accumulate ? *p.e8m0_max : 0u;
  for (int64_t i = 0; i < p.n_scales; ++i) m = std::max(m, static_cast<uint32_t>(p.e8m0[i]));
  *p.e8m0_max = m;
}

void mxfp4_to_nvfp4_ref(const Mxfp4ToNvfp4Params& p) {
  mxfp4_check_shape(p.n_rows, p.n_cols);
  QF_CHECK(p.e8m0_max && p.out_scale_2 && p.counts &&
               (p.n_rows * p.n_cols == 0 || (p.packed && p.e8m0 && p.out_packed && p.out_scale)),
           "mxfp4 -> nvfp4: null pointer");
  // k_max of scale_2 and of the lossless count: shared with the sibling when there is one
  // (quantize_to_nvfp4.py:301-305); the in-range test uses this tensor's own (sentinel) k_max.
  int k_max = mxfp4_k_max(*p.e8m0_max);
  if (p.e8m0_max_pair) k_max = std::max(k_max, mxfp4_k_max(*p.e8m0_max_pair));
  const int k_max_local = mxfp4_k_max_local(*p.e8m0_max);
  const float scale_2 = mxfp4_nvfp4_scale_2(k_max);
  *p.out_scale_2 = scale_2;

  uint64_t counts[kMxfp4CountSlots] = {};
  const int64_t n_blocks32 = p.n_rows * (p.n_cols / kMxfp4BlockSize);
  for (int64_t b32 = 0; b32 < n_blocks32; ++b32) {
    const uint8_t e8m0 = p.e8m0[b32];
    const uint8_t* src = p.packed + b32 * (kMxfp4BlockSize / 2);
    uint8_t codes[kMxfp4BlockSize];
    uint8_t max_magnitude_index = 0;
    for (int i = 0; i < kMxfp4BlockSize; ++i) {
      codes[i] = (i % 2 == 0) ? e2m1_unpack_lo(src[i / 2]) : e2m1_unpack_hi(src[i / 2]);
      max_magnitude_index = std::max<uint8_t>(max_magnitude_index, codes[i] & 0x7u);
    }
    if (mxfp4_block_lossless(e8m0, k_max)) ++counts[kMxfp4CountLossless];
    if (!mxfp4_block_in_range(e8m0, k_max_local)) ++counts[kMxfp4CountFallback];

    // Both 16-halves share the amax, hence the scale (numeric_utils.py:178 repeat_interleave).
    const float block_amax = mxfp4_nvfp4_block_amax(e8m0, max_magnitude_index, k_max_local);
    const uint8_t scale_code = mxfp4_nvfp4_block_scale(block_amax, scale_2);
    p.out_scale[2 * b32] = scale_code;
    p.out_scale[2 * b32 + 1] = scale_code;
    const float divisor = nvfp4_block_divisor(scale_code, scale_2);

    uint8_t* dst = p.out_packed + b32 * (kMxfp4BlockSize / 2);
    for (int i = 0; i < kMxfp4BlockSize; i += 2) {
      const float x_lo = mxfp4_dequantize_bf16(codes[i], e8m0);
      const float x_hi = mxfp4_dequantize_bf16(codes[i + 1], e8m0);
      counts[kMxfp4CountNonfinite] += !is_finite_float(x_lo);
      counts[kMxfp4CountNonfinite] += !is_finite_float(x_hi);
      dst[i / 2] = e2m1_pack(nvfp4_encode(x_lo, divisor), nvfp4_encode(x_hi, divisor));
    }
  }
  std::memcpy(p.counts, counts, sizeof(counts));
}

}  // namespace qf::kernels
