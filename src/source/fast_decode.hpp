// Table-driven CPU decoders of the weight formats eval and the calibration forward read: the
// same values as the scalar references (kernels fp8_block_dequant_ref / fp4_block_dequant_ref
// widened from BF16, kernels nvfp4_dequantize_ref), bit for bit, computed once per scale instead
// of once per element and spread over parallel_for threads. Owns: those loops. Does not
// own: the format definitions (numerics/, kernels/ references) or reading the bytes.
#pragma once
#include <cstdint>

#include "core/dtype.hpp"

namespace qf::pipeline {

// DeepSeek FP8 E4M3 [n_rows, n_cols] with one scale per 128x128 tile (E8M0 bytes or F32,
// scale_dtype), to FP32: bf16_to_float(fp8_block_to_bf16(code, tile scale)) per element.
void decode_fp8_block_to_float(const uint8_t* codes, const void* scale, DType scale_dtype,
                               int64_t n_rows, int64_t n_cols, float* out);

// DeepSeek FP4 E2M1 (two per byte, low nibble first) [n_rows, n_cols] with one E8M0 scale per
// 32 elements of a row, to FP32: bf16_to_float(fp4_to_bf16(code, scale_value(byte))).
void decode_fp4_block_to_float(const uint8_t* packed, const uint8_t* scale, int64_t n_rows,
                               int64_t n_cols, float* out);

// NVFP4 (E2M1 codes, E4M3 scale per 16 elements of a row, linear layout, global scale_2) to
// FP32: nvfp4_decode(code, scale byte, scale_2) per element (a NaN block scale, E4M3 0x7F/0xFF,
// which no export holds, gives NaN either way but its sign bit may differ).
void decode_nvfp4_to_float(const uint8_t* packed, const uint8_t* scale, float scale_2,
                           int64_t n_rows, int64_t n_cols, float* out);

}  // namespace qf::pipeline
