// GPTQ for NVFP4 (--weight-scale gptq): the params structs and the CPU references. Standard GPTQ
// (Frantar et al. 2022, "OPTQ"; ModelOpt utils/calib_utils.py) with group size 16 adapted to
// NVFP4's two-level scales: weight_scale_2 is fixed beforehand, each 16-block's E4M3 scale is
// chosen when the block starts, from the weights as the earlier columns' errors left them, and
// each column's rounding error is spread over the later columns through the inverse Hessian.
// No CUDA kernel: gpu::Nvfp4Ops runs these on the host for the CUDA backend too (the column loop
// is sequential; src/gpu/nvfp4_ops.hpp says why). Does not own where H comes from
// (calibrate/hessian_recorder.hpp) or which tensors use it (quantize/quantize_weights.cpp).
#pragma once
#include <cstdint>

#include "numerics/nvfp4_search.hpp"

namespace qf::kernels {

// ---- the inverse factor -------------------------------------------------------------------------
// U, the upper Cholesky factor of (H + damp)^-1 (H^-1 = U^T U), from H = X^T X of the layer's
// calibration inputs (any positive multiple: GPTQ's updates are invariant to H's scale):
//   1. a dead input (H[i][i] == 0: always zero in calibration) gets H[i][i] = 1 (GPTQ's rule; its
//      row and column are zero, so it neither receives nor spreads error);
//   2. damp = damp_fraction * mean(diag H) is added to the diagonal (ModelOpt perc_damp 0.01);
//   3. Cholesky H = L L^T, L^-1, H^-1 = L^-T L^-1, then U = upper Cholesky of H^-1.
// A pivot <= 0 retries with the damping 10x larger, up to kGptqMaxDampRetries times; after that
// U is the identity (plain rounding with the chosen scales, as ModelOpt falls back).
constexpr int kGptqMaxDampRetries = 4;
constexpr double kGptqDefaultDamp = 0.01;

struct GptqFactorParams {
  const double* hessian = nullptr;  // [n, n] symmetric
  int64_t n = 0;
  double damp_fraction = kGptqDefaultDamp;
  double* u = nullptr;       // [n, n] out: upper triangle, lower triangle zero
  int* n_retries = nullptr;  // [1] out, or null: damping escalations used
  bool* identity = nullptr;  // [1] out, or null: true when every attempt failed
};
void gptq_inverse_factor_ref(const GptqFactorParams& p);

// ---- the quantizer ------------------------------------------------------------------------------
// Row by row (rows are independent given U; a caller may split rows among workers), columns in
// order, in double: at column c = 16b, block b's scale is nvfp4_choose_block_scale (kMax,
// kFourOverSix or kMse) of the block's current values rounded to float; then for c in the block
//   code_c = nvfp4_encode(float(w_c), d_b),  q_c = e2m1(code_c) * d_b,
//   e = (w_c - q_c) / U[c][c],  w_j -= e * U[c][j] for every j > c (j ascending).
// The codes and scales have the ModelOpt layout of nvfp4_quantize.cuh.
struct Nvfp4GptqParams {
  const float* w = nullptr;  // [n_rows, n_cols] FP32 (the BF16 weights widened exactly)
  int64_t n_rows = 0;
  int64_t n_cols = 0;         // multiple of 16
  const double* u = nullptr;  // [n_cols, n_cols] from gptq_inverse_factor_ref
  float scale_2 = 0;          // finite and > 0
  numerics::Nvfp4BlockSearch search = numerics::Nvfp4BlockSearch::kMse;  // not kHessian
  uint8_t* packed = nullptr;                                             // [n_rows, n_cols/2] out
  uint8_t* scale = nullptr;    // [n_rows, n_cols/16] out, E4M3 (linear layout)
  double* sq_error = nullptr;  // [1] out, or null: sum (w - decoded)^2 against the original w
};
void nvfp4_gptq_quantize_ref(const Nvfp4GptqParams& p);

}  // namespace qf::kernels
