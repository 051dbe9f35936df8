// NVFP4 round trip of activations, one 16-element block at a time (plain loops: the spec).
#include "eval/nvfp4_fake_quant.hpp"

#include <algorithm>
#include <cmath>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "model/forward_linear.hpp"
#include "numerics/nvfp4.hpp"

namespace qf::pipeline {

using namespace qf::numerics;

void nvfp4_fake_quantize_rows(float* x, int64_t n_rows, int64_t n_cols, float input_scale) {
  QF_CHECK(n_cols % kNvfp4BlockSize == 0, "nvfp4 activation quantization: row width", n_cols,
           "is not a multiple of", kNvfp4BlockSize);
  QF_CHECK(std::isfinite(input_scale) && input_scale > 0.0f,
           "nvfp4 activation quantization: input_scale", input_scale, "must be finite and > 0");
  const int64_t n_blocks = n_rows * (n_cols / kNvfp4BlockSize);
  // Blocks are independent: threads over blocks change nothing.
  parallel_for(n_blocks, [&](int64_t block_begin, int64_t block_end) {
    for (int64_t b = block_begin; b < block_end; ++b) {
      float* v = x + b * kNvfp4BlockSize;
      // Block amax on |x| bit patterns, as nvfp4_quantize_ref (a NaN wins).
      uint32_t amax_bits = 0;
      for (int i = 0; i < kNvfp4BlockSize; ++i) {
        amax_bits = std::max(amax_bits, float_to_bits(v[i]) & 0x7FFFFFFFu);
      }
      const uint8_t scale_code = nvfp4_block_scale(bits_to_float(amax_bits), input_scale);
      const float divisor = nvfp4_block_divisor(scale_code, input_scale);
      for (int i = 0; i < kNvfp4BlockSize; ++i) {
        v[i] = nvfp4_decode(nvfp4_encode(v[i], divisor), scale_code, input_scale);
      }
    }
  });
}

}  // namespace qf::pipeline
