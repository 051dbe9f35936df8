// Dequantize kernel family for the DeepSeek V4 native block formats (FORMATS.md section 4) to
// BF16: FP8 E4M3 with 128x128-tile scales, and packed FP4 E2M1 with per-32 UE8M0 scales.
// Declares params, CPU references (*_ref, always built) and launchers (CUDA builds). Does not
// own the scalar math (numerics/block_dequant.hpp), so CPU and GPU results are bit-identical.
//
// Per element: bf16 = RNE(float(decode(code)) * float(scale)), the product taken in float32,
// i.e. torch's (w.float() * s).to(torch.bfloat16). Any NaN result (E4M3 NaN code, UE8M0 0xFF
// scale, NaN/Inf F32 scale times 0) is written as the canonical BF16 NaN 0x7FC0; nothing throws
// on NaN data, so callers that must refuse NaN scales check the scale tensor themselves.
#pragma once
#include <cstdint>

#include "core/dtype.hpp"
#include "core/int_math.hpp"
#include "numerics/block_dequant.hpp"

#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qf::kernels {

// ---- FP8 E4M3 weight, one scale per 128x128 tile ------------------------------------------------
// Layout (row-major everywhere):
//   codes  F8_E4M3            [n_rows, n_cols]
//   scale  F8_E8M0 or F32     [ceil(n_rows/128), ceil(n_cols/128)]
//   out    BF16 bits          [n_rows, n_cols]
// Element (r, c) uses scale[(r / 128) * ceil(n_cols / 128) + c / 128]; the last tile row and
// column may be partial (n_rows, n_cols need not be multiples of 128).
struct Fp8BlockDequantParams {
  const uint8_t* codes = nullptr;
  const void* scale = nullptr;
  DType scale_dtype = DType::kF8E8M0;  // kF8E8M0 (fp4-expert checkpoints) or kF32 (Base)
  int64_t n_rows = 0;
  int64_t n_cols = 0;
  uint16_t* out = nullptr;
};

// ---- FP4 E2M1 expert weight, one UE8M0 scale per 32 input elements ------------------------------
//   packed I8/U8    [n_rows, n_cols/2]   element 2i in the low nibble, 2i+1 in the high nibble
//   scale  F8_E8M0  [n_rows, n_cols/32]  element (r, c) uses scale[r * (n_cols/32) + c / 32]
//   out    BF16     [n_rows, n_cols]
// n_cols must be a multiple of 32. Experts stacked as [n_experts * n_rows, ...] are one call.
struct Fp4BlockDequantParams {
  const uint8_t* packed = nullptr;
  const uint8_t* scale = nullptr;
  int64_t n_rows = 0;
  int64_t n_cols = 0;
  uint16_t* out = nullptr;
};

inline int64_t fp8_block_scale_rows(int64_t n_rows) {
  return ceil_div(n_rows, numerics::kFp8TileRows);
}
inline int64_t fp8_block_scale_cols(int64_t n_cols) {
  return ceil_div(n_cols, numerics::kFp8TileCols);
}

// Shape and pointer checks shared by the references and the launchers (QF_CHECK with values).
void fp8_block_dequant_check(const Fp8BlockDequantParams& p);
void fp4_block_dequant_check(const Fp4BlockDequantParams& p);

// ---- CPU references: plain loops, the spec in code (dequant_ref.cpp) ----------------------------
void fp8_block_dequant_ref(const Fp8BlockDequantParams& p);
void fp4_block_dequant_ref(const Fp4BlockDequantParams& p);

#ifdef QF_HAVE_CUDA
// ---- launchers: device pointers, validate, launch on stream; no allocation, no sync ------------
// FP8: vectorized path (8 codes in, 16 B out per thread step) when n_cols % 8 == 0, codes are
// 8-byte and out 16-byte aligned; otherwise a one-element-per-thread path. Same results.
void launch_fp8_block_dequant(const Fp8BlockDequantParams& p, cudaStream_t stream);
// FP4: packed must be 4-byte and out 16-byte aligned (checked).
void launch_fp4_block_dequant(const Fp4BlockDequantParams& p, cudaStream_t stream);
#endif

}  // namespace qf::kernels
