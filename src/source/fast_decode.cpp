// Table-driven decoders: per scale value a table of every code's result, filled by the scalar
// reference functions themselves, so each element is a lookup of exactly the reference's value.
#include "source/fast_decode.hpp"

#include <algorithm>
#include <array>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "model/forward_linear.hpp"
#include "numerics/block_dequant.hpp"
#include "numerics/nvfp4.hpp"

namespace qf::pipeline {
namespace {

using namespace qf::numerics;

// [E8M0 scale byte][E2M1 code] -> the FP4 reference's value, widened from BF16.
const std::array<std::array<float, 16>, 256>& fp4_table() {
  static const auto table = [] {
    std::array<std::array<float, 16>, 256> t{};
    for (int s = 0; s < 256; ++s) {
      for (int c = 0; c < 16; ++c) {
        t[s][c] = bf16_to_float(
            fp4_to_bf16(static_cast<uint8_t>(c), scale_value(static_cast<uint8_t>(s))));
      }
    }
    return t;
  }();
  return table;
}

}  // namespace

void decode_fp8_block_to_float(const uint8_t* codes, const void* scale, DType scale_dtype,
                               int64_t n_rows, int64_t n_cols, float* out) {
  QF_CHECK(scale_dtype == DType::kF8E8M0 || scale_dtype == DType::kF32,
           "FP8 block decode: scale dtype", dtype_name(scale_dtype), "(want F8_E8M0 or F32)");
  const int64_t n_tile_rows = (n_rows + kFp8TileRows - 1) / kFp8TileRows;
  const int64_t n_tile_cols = (n_cols + kFp8TileCols - 1) / kFp8TileCols;
  parallel_for(n_tile_rows * n_tile_cols, [&](int64_t begin, int64_t end) {
    std::array<float, 256> table;
    for (int64_t tile = begin; tile < end; ++tile) {
      const float s = scale_dtype == DType::kF8E8M0
                          ? scale_value(static_cast<const uint8_t*>(scale)[tile])
                          : static_cast<const float*>(scale)[tile];
      for (int c = 0; c < 256; ++c) {
        table[c] = bf16_to_float(fp8_block_to_bf16(static_cast<uint8_t>(c), s));
      }
      const int64_t r0 = (tile / n_tile_cols) * kFp8TileRows,
                    c0 = (tile % n_tile_cols) * kFp8TileCols;
      const int64_t r1 = std::min(n_rows, r0 + kFp8TileRows),
                    c1 = std::min(n_cols, c0 + kFp8TileCols);
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* in = codes + r * n_cols;
        float* o = out + r * n_cols;
        for (int64_t c = c0; c < c1; ++c) o[c] = table[in[c]];
      }
    }
  });
}

void decode_fp4_block_to_float(const uint8_t* packed, const uint8_t* scale, int64_t n_rows,
                               int64_t n_cols, float* out) {
  QF_CHECK(n_cols % kFp4GroupCols == 0, "FP4 block decode: n_cols", n_cols, "is not a multiple of",
           kFp4GroupCols);
  const auto& table = fp4_table();
  const int64_t groups_per_row = n_cols / kFp4GroupCols;
  parallel_for(n_rows * groups_per_row, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const std::array<float, 16>& t = table[scale[g]];
      const uint8_t* in = packed + g * (kFp4GroupCols / 2);
      float* o = out + g * kFp4GroupCols;
      for (int i = 0; i < kFp4GroupCols / 2; ++i) {
        o[2 * i] = t[e2m1_unpack_lo(in[i])];
        o[2 * i + 1] = t[e2m1_unpack_hi(in[i])];
      }
    }
  });
}

void decode_nvfp4_to_float(const uint8_t* packed, const uint8_t* scale, float scale_2,
                           int64_t n_rows, int64_t n_cols, float* out) {
  QF_CHECK(n_cols % kNvfp4BlockSize == 0, "NVFP4 decode: n_cols", n_cols, "is not a multiple of",
           kNvfp4BlockSize);
  const int64_t n_blocks = n_rows * (n_cols / kNvfp4BlockSize);
  parallel_for(n_blocks, [&](int64_t begin, int64_t end) {
    float e2m1[16];
    for (int c = 0; c < 16; ++c) e2m1[c] = e2m1_to_float(static_cast<uint8_t>(c));
    for (int64_t b = begin; b < end; ++b) {
      // nvfp4_decode's arithmetic: e2m1 value * (block scale * scale_2), the product per block.
      const float block_scale = e4m3_to_float(scale[b]) * scale_2;
      float t[16];
      for (int c = 0; c < 16; ++c) t[c] = e2m1[c] * block_scale;
      const uint8_t* in = packed + b * (kNvfp4BlockSize / 2);
      float* o = out + b * kNvfp4BlockSize;
      for (int i = 0; i < kNvfp4BlockSize / 2; ++i) {
        o[2 * i] = t[e2m1_unpack_lo(in[i])];
        o[2 * i + 1] = t[e2m1_unpack_hi(in[i])];
      }
    }
  });
}

}  // namespace qf::pipeline
