// CPU BlockDequantizer (the reference loops of kernels/dequant_ref.cpp) and the backend switch.
#include "gpu/block_dequantizer.hpp"

#include <algorithm>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "kernels/dequant.cuh"

namespace qf::gpu {

#ifdef QF_HAVE_CUDA
// block_dequantizer_cuda.cu
std::unique_ptr<BlockDequantizer> make_cuda_block_dequantizer(uint64_t max_source_bytes);
#endif

namespace {

// The reference loops stay single-threaded; parallel_for gives each thread whole units (tile
// rows or rows), so the bytes are the same for any thread count. At most 16 threads.
constexpr int64_t kMaxDequantThreads = 16;

class CpuBlockDequantizer final : public BlockDequantizer {
 public:
  void fp8_block(const uint8_t* codes, const void* scales, DType scale_dtype, int64_t n_rows,
                 int64_t n_cols, uint16_t* out) override {
    const int64_t tile = numerics::kFp8TileRows;
    const int64_t scale_row_bytes =
        kernels::fp8_block_scale_cols(n_cols) * int64_t(dtype_n_bytes(scale_dtype, 1));
    parallel_for(
        kernels::fp8_block_scale_rows(n_rows),
        [&](int64_t begin, int64_t end) {
          const int64_t row = begin * tile;
          const int64_t rows = std::min(end * tile, n_rows) - row;
          kernels::fp8_block_dequant_ref(
              {codes + row * n_cols, static_cast<const uint8_t*>(scales) + begin * scale_row_bytes,
               scale_dtype, rows, n_cols, out + row * n_cols});
        },
        kMaxDequantThreads);
  }
  void fp4_block(const uint8_t* packed, const uint8_t* scales, int64_t n_rows, int64_t n_cols,
                 uint16_t* out) override {
    parallel_for(
        n_rows,
        [&](int64_t begin, int64_t end) {
          kernels::fp4_block_dequant_ref({packed + begin * n_cols / 2,
                                          scales + begin * n_cols / numerics::kFp4GroupCols,
                                          end - begin, n_cols, out + begin * n_cols});
        },
        kMaxDequantThreads);
  }
};

}  // namespace

std::unique_ptr<BlockDequantizer> make_block_dequantizer(dist::ComputeBackend backend,
                                                         uint64_t max_source_bytes) {
  if (backend == dist::ComputeBackend::kCpu) return std::make_unique<CpuBlockDequantizer>();
#ifdef QF_HAVE_CUDA
  return make_cuda_block_dequantizer(max_source_bytes);
#else
  (void)max_source_bytes;
  QF_FAIL("the cuda backend is not built in (QF_CUDA=OFF)");
#endif
}

}  // namespace qf::gpu
