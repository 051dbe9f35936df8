// NVFP4 scale search, one 16-element block at a time (host and device): the squared error of a
// block under a given E4M3 block scale, the Four-over-Six scale, the candidate order of the
// per-block searches and the per-tensor weight_scale_2 candidates. Only the choice of scales
// changes: every element is still encoded by numerics/nvfp4.hpp's nvfp4_encode (ModelOpt's
// rounding), so a block keeps exactly the codes ModelOpt would write for the scale chosen.
// Does not own the tensor loops (kernels/nvfp4_search_ref.cpp, kernels/nvfp4_gptq_ref.cpp).
#pragma once
#include <cstdint>

#include "numerics/nvfp4.hpp"

namespace qf::numerics {

// ---- exact double arithmetic --------------------------------------------------------------------
// The searches compare error sums, so a kernel must form them in the same order with the same
// roundings as the reference: no contraction of a * b + c into an FMA (nvcc contracts by default,
// host x86-64 builds without -mfma never do). These helpers pin one rounding per operation.
QF_HD inline double nvfp4_mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
QF_HD inline double nvfp4_add_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// ---- the error of one block under one scale -----------------------------------------------------

// Squared error of element x after NVFP4 with divisor d = e4m3(scale) * scale_2: the code is
// nvfp4_encode(x, d) and the decoded value e2m1(code) * d, exact in float (E2M1 values have at
// most 2 significant bits). The difference and the square are taken in double.
QF_HD inline double nvfp4_element_sq_error(float x, float divisor) {
  const float q = e2m1_to_float(nvfp4_encode(x, divisor)) * divisor;
  const double diff = static_cast<double>(x) - static_cast<double>(q);
  return nvfp4_mul_rn(diff, diff);
}

// Sum over the block, element 0 first: sum_i (x_i - decode(encode(x_i)))^2.
QF_HD inline double nvfp4_block_sq_error(const float* x, uint8_t scale_code, float scale_2) {
  const float divisor = nvfp4_block_divisor(scale_code, scale_2);
  double sum = 0.0;
  for (int i = 0; i < kNvfp4BlockSize; ++i) {
    sum = nvfp4_add_rn(sum, nvfp4_element_sq_error(x[i], divisor));
  }
  return sum;
}

// Hessian-weighted ("local Hessian", ModelOpt's local_hessian) error of one block: d^T H d with
// d_i = x_i - decode(encode(x_i)) and H the block's 16x16 diagonal block of X^T X (row-major,
// symmetric). Summed row by row: sum_i d_i * (sum_j H[i][j] * d_j), j ascending.
QF_HD inline double nvfp4_block_h_error(const float* x, uint8_t scale_code, float scale_2,
                                        const double* h_block) {
  const float divisor = nvfp4_block_divisor(scale_code, scale_2);
  double d[kNvfp4BlockSize];
  for (int i = 0; i < kNvfp4BlockSize; ++i) {
    const float q = e2m1_to_float(nvfp4_encode(x[i], divisor)) * divisor;
    d[i] = static_cast<double>(x[i]) - static_cast<double>(q);
  }
  double sum = 0.0;
  for (int i = 0; i < kNvfp4BlockSize; ++i) {
    double row = 0.0;
    for (int j = 0; j < kNvfp4BlockSize; ++j) {
      row = nvfp4_add_rn(row, nvfp4_mul_rn(h_block[i * kNvfp4BlockSize + j], d[j]));
    }
    sum = nvfp4_add_rn(sum, nvfp4_mul_rn(d[i], row));
  }
  return sum;
}

// ---- candidate scales ---------------------------------------------------------------------------

// Four-over-Six (arXiv 2512.02010; ModelOpt calib/fouroversix.py): the block scale that maps the
// block amax to 4 instead of 6, i.e. 1.5x the max-mapped scale: amax / (4 * scale_2) in float32
// (4 * scale_2 is exact), zero -> 1, clamped and cast like the max-mapped scale.
QF_HD inline uint8_t nvfp4_block_scale_four(float block_amax, float scale_2) {
  const float denominator = 4.0f * scale_2;
  float s = block_amax / denominator;
  if (s == 0.0f) s = 1.0f;
  return nvfp4_clamp_to_e4m3(s);
}

// Every valid positive E4M3 scale byte: 0x01 (2^-9) .. 0x7E (448). The exhaustive sweep of
// ModelOpt's NVFP4MSECalibrator (its 126 FP8 candidates).
constexpr uint8_t kNvfp4ScaleCodeFirst = 0x01;
constexpr uint8_t kNvfp4ScaleCodeLast = kE4m3MaxCode;

// A lower bound of nvfp4_block_sq_error(x, code, scale_2) from one element: the squared error of
// the block's largest |x| alone. The block sum is >= each of its terms (round-to-nearest addition
// of non-negative doubles is monotonic), so skipping a candidate whose bound already reaches the
// best error found cannot change a strict-< search's result.
QF_HD inline double nvfp4_block_sq_error_bound(float x_at_amax, uint8_t scale_code, float scale_2) {
  return nvfp4_element_sq_error(x_at_amax, nvfp4_block_divisor(scale_code, scale_2));
}

// ---- per-tensor weight_scale_2 candidates -------------------------------------------------------
// weight_scale_2 = (amax / 2688) * m_j with m_j = (8 + j) / 8 (exact), the product rounded once.
// j = 0 is ModelOpt's amax/2688 bit for bit. j = 6 (m = 1.75 = 2688 / 1536) is Four-over-Six's
// global scale amax / (6 * 256): the largest blocks keep room for the 1.5x of the 4-mapped scale
// below E4M3's 448. j = -1 lets the largest blocks clip at 448. The search order puts j = 0 first
// so that ties keep ModelOpt's value.
constexpr int kNvfp4Scale2Candidates = 8;
QF_HD inline int nvfp4_scale_2_candidate_step(int index) {  // index 0..7 -> j = 0..6, -1
  return index < kNvfp4Scale2Candidates - 1 ? index : -1;
}
QF_HD inline float nvfp4_scale_2_candidate(float amax, int index) {
  const float m = static_cast<float>(8 + nvfp4_scale_2_candidate_step(index)) / 8.0f;
  return nvfp4_scale_from_amax(amax, Nvfp4ScaleDivision::kTrueDivide) * m;
}

// ---- the per-block searches
// ----------------------------------------------------------------------

// How a block's E4M3 scale is chosen (--weight-scale; kernels/nvfp4_search.cuh).
enum class Nvfp4BlockSearch : uint8_t {
  kMax = 0,          // ModelOpt: the max-mapped scale nvfp4_block_scale(block amax, scale_2)
  kFourOverSix = 1,  // {max-mapped, 4-mapped}: the lower squared error (ties: max-mapped)
  kMse = 2,          // every E4M3 scale 0x01..0x7E: the lowest squared error (ModelOpt's sweep)
  kHessian = 3,      // max-mapped +- 8 codes: the lowest d^T H d (needs the block's H)
};
constexpr int kNvfp4HessianWindow = 8;  // kHessian: codes c0 - 8 .. c0 + 8 around max-mapped c0

// The E4M3 scale byte of one block of 16 floats under `search`, and (if `error` is not null) its
// error: squared error, or d^T H d for kHessian (h_block: the block's 16x16 of X^T X, row-major).
// Candidates are tried max-mapped first, then in ascending code order; a later candidate replaces
// the best only with a strictly lower error, so a tie keeps the earlier one and no block ever
// ends with a higher error than the max-mapped scale. A block holding NaN/Inf keeps the
// max-mapped scale (such tensors are refused by the caller). The zero block keeps 0x38 (all its
// candidates have error 0).
QF_HD inline uint8_t nvfp4_choose_block_scale(const float* x, float scale_2,
                                              Nvfp4BlockSearch search, const double* h_block,
                                              double* error) {
  uint32_t amax_bits = 0;
  int at_amax = 0;
  for (int i = 0; i < kNvfp4BlockSize; ++i) {
    const uint32_t a = float_to_bits(x[i]) & 0x7FFFFFFFu;
    if (a > amax_bits) amax_bits = a, at_amax = i;
  }
  const float block_amax = bits_to_float(amax_bits);
  const uint8_t c0 = nvfp4_block_scale(block_amax, scale_2);
  const bool finite = amax_bits < 0x7F800000u;
  const bool weighted = search == Nvfp4BlockSearch::kHessian;
  const auto block_error = [&](uint8_t code) {
    return weighted ? nvfp4_block_h_error(x, code, scale_2, h_block)
                    : nvfp4_block_sq_error(x, code, scale_2);
  };
  uint8_t best = c0;
  if (search == Nvfp4BlockSearch::kMax || !finite) {
    if (error) *error = block_error(c0);
    return c0;
  }
  double best_error = block_error(c0);
  if (search == Nvfp4BlockSearch::kFourOverSix) {
    const uint8_t c4 = nvfp4_block_scale_four(block_amax, scale_2);
    if (c4 != c0) {
      const double e4 = block_error(c4);
      if (e4 < best_error) best = c4, best_error = e4;
    }
  } else {
    int first = kNvfp4ScaleCodeFirst, last = kNvfp4ScaleCodeLast;
    if (weighted) {
      first = c0 - kNvfp4HessianWindow > first ? c0 - kNvfp4HessianWindow : first;
      last = c0 + kNvfp4HessianWindow < last ? c0 + kNvfp4HessianWindow : last;
    }
    for (int code = first; code <= last; ++code) {
      if (code == c0) continue;
      const uint8_t c = static_cast<uint8_t>(code);
      // Squared error only: one element's error bounds the block's (see above).
      if (!weighted && nvfp4_block_sq_error_bound(x[at_amax], c, scale_2) >= best_error) continue;
      const double e = block_error(c);
      if (e < best_error) best = c, best_error = e;
    }
  }
  if (error) *error = best_error;
  return best;
}

}  // namespace qf::numerics
