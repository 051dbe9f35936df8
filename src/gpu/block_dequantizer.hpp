// Converts stripes of block-scaled native weights to BF16 with the CPU reference or the CUDA
// kernels (kernels/dequant.cuh); both give identical bytes. Owns: staging buffers and the
// backend switch. Does not own the file I/O (dequant.cpp streams stripes through it).
#pragma once
#include <cstdint>
#include <memory>

#include "core/dtype.hpp"
#include "dist/compute_backend.hpp"

namespace qf::gpu {

class BlockDequantizer {
 public:
  virtual ~BlockDequantizer() = default;
  // codes: [n_rows, n_cols] E4M3, starting on a 128-row tile boundary; scales: the
  // ceil(n_rows/128) x ceil(n_cols/128) tile scales of those rows as stored (UE8M0 bytes or
  // F32, `scale_dtype`). out: [n_rows, n_cols] BF16 bits.
  virtual void fp8_block(const uint8_t* codes, const void* scales, DType scale_dtype,
                         int64_t n_rows, int64_t n_cols, uint16_t* out) = 0;
  // packed: [n_rows, n_cols/2] E2M1 pairs (low nibble first); scales: [n_rows, n_cols/32]
  // UE8M0. out: [n_rows, n_cols] BF16 bits.
  virtual void fp4_block(const uint8_t* packed, const uint8_t* scales, int64_t n_rows,
                         int64_t n_cols, uint16_t* out) = 0;
};

// max_source_bytes bounds one call's input (the CUDA backend sizes its device buffers by it).
std::unique_ptr<BlockDequantizer> make_block_dequantizer(dist::ComputeBackend backend,
                                                         uint64_t max_source_bytes);

}  // namespace qf::gpu
