// CUDA BlockDequantizer: host stripe -> device -> kernels/dequant.cu -> host, on one stream.
// Buffers grow to the largest stripe seen (bounded by the job's --chunk-mib).
#include <memory>

#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "gpu/block_dequantizer.hpp"
#include "kernels/dequant.cuh"

namespace qf::gpu {
namespace {

class CudaBlockDequantizer final : public BlockDequantizer {
 public:
  explicit CudaBlockDequantizer(uint64_t max_source_bytes) {
    codes_.grow(max_source_bytes);
    out_.grow(max_source_bytes * 2);
  }

  void fp8_block(const uint8_t* codes, const void* scales, DType scale_dtype, int64_t n_rows,
                 int64_t n_cols, uint16_t* out) override {
    const size_t n_codes = size_t(n_rows * n_cols);
    const size_t n_scale_bytes =
        size_t(kernels::fp8_block_scale_rows(n_rows) * kernels::fp8_block_scale_cols(n_cols)) *
        dtype_n_bytes(scale_dtype, 1);
    upload(codes, n_codes, scales, n_scale_bytes, n_codes);
    kernels::launch_fp8_block_dequant(
        {codes_.get(), scales_.get(), scale_dtype, n_rows, n_cols, out_.get()}, stream_.get());
    download(out, n_codes);
  }

  void fp4_block(const uint8_t* packed, const uint8_t* scales, int64_t n_rows, int64_t n_cols,
                 uint16_t* out) override {
    const size_t n_elems = size_t(n_rows * n_cols);
    upload(packed, n_elems / 2, scales, n_elems / numerics::kFp4GroupCols, n_elems);
    kernels::launch_fp4_block_dequant({codes_.get(), scales_.get(), n_rows, n_cols, out_.get()},
                                      stream_.get());
    download(out, n_elems);
  }

 private:
  void upload(const uint8_t* codes, size_t n_code_bytes, const void* scales, size_t n_scale_bytes,
              size_t n_out) {
    codes_.grow(n_code_bytes);
    scales_.grow(n_scale_bytes);
    out_.grow(n_out);
    QF_CUDA_CHECK(
        cudaMemcpyAsync(codes_.get(), codes, n_code_bytes, cudaMemcpyHostToDevice, stream_.get()),
        "upload of codes");
    QF_CUDA_CHECK(cudaMemcpyAsync(scales_.get(), scales, n_scale_bytes, cudaMemcpyHostToDevice,
                                  stream_.get()),
                  "upload of scales");
  }
  void download(uint16_t* out, size_t n_out) {
    QF_CUDA_CHECK(cudaMemcpyAsync(out, out_.get(), n_out * sizeof(uint16_t), cudaMemcpyDeviceToHost,
                                  stream_.get()),
                  "download of BF16");
    stream_.synchronize("dequant stripe");
  }

  CudaStream stream_;
  DeviceBuffer<uint8_t> codes_;
  DeviceBuffer<uint8_t> scales_;
  DeviceBuffer<uint16_t> out_;
};

}  // namespace

std::unique_ptr<BlockDequantizer> make_cuda_block_dequantizer(uint64_t max_source_bytes) {
  return std::make_unique<CudaBlockDequantizer>(max_source_bytes);
}

}  // namespace qf::gpu
