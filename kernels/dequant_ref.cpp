// CPU references of the dequant kernel family (declared in dequant.cuh): plain loops over the
// scalar spec in numerics/block_dequant.hpp. No SIMD, no threads; slow on purpose.
#include "core/check.hpp"
#include "kernels/dequant.cuh"

namespace qf::kernels {

using namespace qf::numerics;

void fp8_block_dequant_check(const Fp8BlockDequantParams& p) {
  QF_CHECK(p.n_rows >= 0 && p.n_cols >= 0, "FP8 block dequant shape", p.n_rows, "x", p.n_cols,
           "is negative");
  QF_CHECK(p.scale_dtype == DType::kF8E8M0 || p.scale_dtype == DType::kF32,
           "FP8 block dequant: scale dtype must be F8_E8M0 or F32, got", dtype_name(p.scale_dtype));
  if (p.n_rows == 0 || p.n_cols == 0) return;
  QF_CHECK(p.codes != nullptr && p.scale != nullptr && p.out != nullptr,
           "FP8 block dequant: null pointer for a", p.n_rows, "x", p.n_cols, "tensor");
}

void fp4_block_dequant_check(const Fp4BlockDequantParams& p) {
  QF_CHECK(p.n_rows >= 0 && p.n_cols >= 0, "FP4 block dequant shape", p.n_rows, "x", p.n_cols,
           "is negative");
  QF_CHECK_MULTIPLE_OF(p.n_cols, kFp4GroupCols, "FP4 block dequant");
  if (p.n_rows == 0 || p.n_cols == 0) return;
  QF_CHECK(p.packed != nullptr && p.scale != nullptr && p.out != nullptr,
           "FP4 block dequant: null pointer for a", p.n_rows, "x", p.n_cols, "tensor");
}

void fp8_block_dequant_ref(const Fp8BlockDequantParams& p) {
  fp8_block_dequant_check(p);
  const int64_t n_scale_cols = fp8_block_scale_cols(p.n_cols);
  const auto* scale_e8m0 = static_cast<const uint8_t*>(p.scale);
  const auto* scale_f32 = static_cast<const float*>(p.scale);
  for (int64_t r = 0; r < p.n_rows; ++r) {
    for (int64_t c = 0; c < p.n_cols; ++c) {
      // FORMATS.md section 4: one scale per 128x128 tile, row-major over tiles.
      const int64_t s = (r / kFp8TileRows) * n_scale_cols + c / kFp8TileCols;
      const float scale =
          p.scale_dtype == DType::kF8E8M0 ? scale_value(scale_e8m0[s]) : scale_f32[s];
      const int64_t i = r * p.n_cols + c;
      p.out[i] = fp8_block_to_bf16(p.codes[i], scale);
    }
  }
}

void fp4_block_dequant_ref(const Fp4BlockDequantParams& p) {
  fp4_block_dequant_check(p);
  const int64_t n_bytes_per_row = p.n_cols / 2;
  const int64_t n_scales_per_row = p.n_cols / kFp4GroupCols;
  for (int64_t r = 0; r < p.n_rows; ++r) {
    for (int64_t c = 0; c < p.n_cols; ++c) {
      // Element 2i is the low nibble of byte i (FORMATS.md section 4).
      const uint8_t byte = p.packed[r * n_bytes_per_row + c / 2];
      const uint8_t code = (c % 2 == 0) ? e2m1_unpack_lo(byte) : e2m1_unpack_hi(byte);
      const float scale = scale_value(p.scale[r * n_scales_per_row + c / kFp4GroupCols]);
      p.out[r * p.n_cols + c] = fp4_to_bf16(code, scale);
    }
  }
}

}  // namespace qf::kernels
