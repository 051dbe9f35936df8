// CPU BlockDequantizer (the reference loops of kernels/dequant_ref.cpp) and the backend switch.
#include "pipeline/block_dequantizer.hpp"

#include "core/check.hpp"
#include "kernels/dequant.cuh"

namespace qf::pipeline {

#ifdef QF_HAVE_CUDA
// block_dequantizer_cuda.cu
std::unique_ptr<BlockDequantizer> make_cuda_block_dequantizer(uint64_t max_source_bytes);
#endif

namespace {

class CpuBlockDequantizer final : public BlockDequantizer {
 public:
  void fp8_block(const uint8_t* codes, const void* scales, DType scale_dtype, int64_t n_rows,
                 int64_t n_cols, uint16_t* out) override {
    kernels::fp8_block_dequant_ref({codes, scales, scale_dtype, n_rows, n_cols, out});
  }
  void fp4_block(const uint8_t* packed, const uint8_t* scales, int64_t n_rows, int64_t n_cols,
                 uint16_t* out) override {
    kernels::fp4_block_dequant_ref({packed, scales, n_rows, n_cols, out});
  }
};

}  // namespace

std::unique_ptr<BlockDequantizer> make_block_dequantizer(Backend backend,
                                                         uint64_t max_source_bytes) {
  if (backend == Backend::kCpu) return std::make_unique<CpuBlockDequantizer>();
#ifdef QF_HAVE_CUDA
  return make_cuda_block_dequantizer(max_source_bytes);
#else
  (void)max_source_bytes;
  QF_FAIL("the cuda backend is not built in (QF_CUDA=OFF)");
#endif
}

}  // namespace qf::pipeline
