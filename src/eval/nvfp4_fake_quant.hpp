// Simulated NVFP4 activation quantization (W4A4 serving): a linear's input rounded through
// NVFP4 and back, with the exported input_scale as the global scale. Owns: that tensor loop.
// Does not own: the scalar math (numerics/nvfp4.hpp) or which linears get it (eval).
#pragma once
#include <cstdint>

namespace qf::pipeline {

// x [n_rows, n_cols] row-major, n_cols % 16 == 0, replaced in place by
//   decode(encode(x)) per 16 consecutive elements of a row, with scale_2 = input_scale:
//   block scale s = nvfp4_block_scale(max |x_block|, input_scale)   (E4M3 byte, clamped to
//                   [2^-9, 448]: activations beyond the calibrated amax saturate)
//   code_i       = nvfp4_encode(x_i, e4m3(s) * input_scale)         (E2M1, RNE, saturating)
//   x_i         <- nvfp4_decode(code_i, s, input_scale)
// exactly the weight quantizer's arithmetic (kernels nvfp4_quantize_ref) on FP32 input. A block
// holding NaN decodes to NaN. input_scale must be finite and > 0.
void nvfp4_fake_quantize_rows(float* x, int64_t n_rows, int64_t n_cols, float input_scale);

}  // namespace qf::pipeline
