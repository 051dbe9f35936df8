// CPU reference of the searched-scale NVFP4 quantizer: per block, nvfp4_choose_block_scale
// (numerics/nvfp4_search.hpp), then the codes of that scale. No SIMD, no threads.
#include <algorithm>

#include "core/check.hpp"
#include "kernels/nvfp4_search.cuh"

namespace qf::kernels {

using namespace qf::numerics;

void nvfp4_search_quantize_ref(const Nvfp4SearchQuantizeParams& p) {
  nvfp4_check_shape(p.n_rows, p.n_cols, p.layout);
  const int64_t n_blocks_per_row = p.n_cols / kNvfp4BlockSize;
  const bool write = p.packed != nullptr;
  QF_CHECK((p.packed == nullptr) == (p.scale == nullptr), "nvfp4 search: packed and scale must be",
           "both set or both null");
  QF_CHECK(p.error && p.n_nonfinite && (p.n_rows * n_blocks_per_row == 0 || p.x),
           "nvfp4 search: null pointer");
  QF_CHECK(is_finite_float(p.scale_2) && p.scale_2 > 0, "nvfp4 search: weight_scale_2", p.scale_2,
           "must be finite and > 0");
  const bool weighted = p.search == Nvfp4BlockSearch::kHessian;
  QF_CHECK(!weighted || (p.h_blocks && p.h_group_rows > 0), "nvfp4 search: hessian search needs",
           "h_blocks and h_group_rows > 0");
  double error = 0.0;
  uint64_t n_moved = 0, n_nonfinite = 0;
  for (int64_t row = 0; row < p.n_rows; ++row) {
    const double* h_group =
        weighted ? p.h_blocks + (row / p.h_group_rows) * n_blocks_per_row * 256 : nullptr;
    for (int64_t blk = 0; blk < n_blocks_per_row; ++blk) {
      const float* x = p.x + row * p.n_cols + blk * kNvfp4BlockSize;
      for (int i = 0; i < kNvfp4BlockSize; ++i) {
        n_nonfinite += is_finite_float(x[i]) ? 0 : 1;
      }
      double block_error = 0.0;
      const uint8_t code = nvfp4_choose_block_scale(
          x, p.scale_2, p.search, weighted ? h_group + blk * 256 : nullptr, &block_error);
      error += block_error;
      if (p.search != Nvfp4BlockSearch::kMax) {
        float amax = 0.0f;
        for (int i = 0; i < kNvfp4BlockSize; ++i) {
          amax = bits_to_float(std::max(float_to_bits(amax), float_to_bits(x[i]) & 0x7FFFFFFFu));
        }
        n_moved += code != nvfp4_block_scale(amax, p.scale_2) ? 1 : 0;
      }
      if (!write) continue;
      // Scale placement: Nvfp4ScaleLayout::kLinear.
      p.scale[row * n_blocks_per_row + blk] = code;
      const float divisor = nvfp4_block_divisor(code, p.scale_2);
      uint8_t* out = p.packed + (row * p.n_cols + blk * kNvfp4BlockSize) / 2;
      for (int i = 0; i < kNvfp4BlockSize; i += 2) {
        out[i / 2] = e2m1_pack(nvfp4_encode(x[i], divisor), nvfp4_encode(x[i + 1], divisor));
      }
    }
  }
  *p.error = error;
  if (p.n_moved) *p.n_moved = n_moved;
  *p.n_nonfinite = n_nonfinite;
}

void nvfp4_hessian_diag_blocks_ref(const double* h, int64_t n, double* out) {
  QF_CHECK_MULTIPLE_OF(n, kNvfp4BlockSize, "hessian diagonal blocks");
  for (int64_t b = 0; b < n / kNvfp4BlockSize; ++b) {
    for (int i = 0; i < kNvfp4BlockSize; ++i) {
      for (int j = 0; j < kNvfp4BlockSize; ++j) {
        out[(b * kNvfp4BlockSize + i) * kNvfp4BlockSize + j] =
            h[(b * kNvfp4BlockSize + i) * n + b * kNvfp4BlockSize + j];
      }
    }
  }
}

}  // namespace qf::kernels
