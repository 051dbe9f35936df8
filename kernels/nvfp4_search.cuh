// NVFP4 quantization with searched block scales (--weight-scale 4over6 | mse | hessian): the
// params struct and the CPU reference. The same output layout as nvfp4_quantize.cuh (packed
// E2M1, linear E4M3 scales); only which E4M3 scale a block gets differs, and with it the codes.
// The per-block rule lives in numerics/nvfp4_search.hpp (host and device), so a CUDA kernel that
// calls nvfp4_choose_block_scale per block gives the same bytes. There is no such kernel yet:
// gpu::Nvfp4Ops runs this reference on the host for the CUDA backend too (src/gpu/nvfp4_ops.hpp
// says why). Does not own the weight_scale_2 candidates' loop (quantize/quantize_weights.cpp).
#pragma once
#include <cstdint>

#include "kernels/nvfp4_quantize.cuh"
#include "numerics/nvfp4_search.hpp"

namespace qf::kernels {

struct Nvfp4SearchQuantizeParams {
  const float* x = nullptr;  // [n_rows, n_cols] FP32 (BF16 weights widened exactly)
  int64_t n_rows = 0;
  int64_t n_cols = 0;  // multiple of 16
  float scale_2 = 0;   // weight_scale_2: finite and > 0 (caller checks)
  numerics::Nvfp4BlockSearch search = numerics::Nvfp4BlockSearch::kMse;
  // kHessian only: the diagonal 16x16 blocks of the input's X^T X, [n_groups, n_cols/16, 16, 16]
  // row-major; row r of x uses group r / h_group_rows (one group: h_group_rows = n_rows). The
  // grouped attn.wo_a has one input per group of rows (model::linear_input_groups).
  const double* h_blocks = nullptr;
  int64_t h_group_rows = 0;
  Nvfp4ScaleLayout layout = Nvfp4ScaleLayout::kLinear;
  uint8_t* packed = nullptr;        // [n_rows, n_cols/2] out, or null with scale null (error only)
  uint8_t* scale = nullptr;         // [n_rows, n_cols/16] out (E4M3), or null
  double* error = nullptr;          // [1] out: the chosen blocks' errors summed in block order
  uint64_t* n_moved = nullptr;      // [1] out, or null: blocks whose scale is not max-mapped
  uint64_t* n_nonfinite = nullptr;  // [1] out: NaN/Inf elements of x
};

// Plain loops (nvfp4_search_ref.cpp). With kMax the bytes equal nvfp4_quantize_ref's on the
// BF16 values of x (tests/unit/test_nvfp4_search.cpp).
void nvfp4_search_quantize_ref(const Nvfp4SearchQuantizeParams& p);

// The diagonal 16x16 blocks of a symmetric [n, n] matrix: out [n/16, 16, 16] (kHessian's input).
void nvfp4_hessian_diag_blocks_ref(const double* h, int64_t n, double* out);

}  // namespace qf::kernels
