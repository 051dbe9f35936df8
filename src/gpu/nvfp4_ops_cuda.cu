// Nvfp4Ops on the GPU: each call copies its host inputs to device scratch, launches the kernel
// of kernels/*.cuh on one stream and copies the outputs back. The scratch buffers grow to the
// largest tensor and are reused, so a layer's targets cost no allocation after the first.
// Each instance stays on the device that was current when it was made (its stream's), whichever
// thread calls it: Nvfp4OpsPool's workers are fresh threads.
#include "core/cuda_raii.hpp"
#include "gpu/nvfp4_ops.hpp"

namespace qf::gpu {
namespace {

class CudaNvfp4Ops final : public Nvfp4Ops {
 public:
  CudaNvfp4Ops() { QF_CUDA_CHECK(cudaGetDevice(&device_), "cudaGetDevice"); }

  void fp8_block_dequant(const kernels::Fp8BlockDequantParams& p) override {
    bind();
    kernels::fp8_block_dequant_check(p);
    const uint64_t n = uint64_t(p.n_rows * p.n_cols);
    const uint64_t n_scales = uint64_t(kernels::fp8_block_scale_rows(p.n_rows) *
                                       kernels::fp8_block_scale_cols(p.n_cols)) *
                              (p.scale_dtype == DType::kF32 ? 4 : 1);
    uint8_t* codes = upload(in_a_, p.codes, n);
    uint8_t* scale = upload(in_b_, p.scale, n_scales);
    out_a_.grow(n * 2);
    auto* out = reinterpret_cast<uint16_t*>(out_a_.get());
    kernels::launch_fp8_block_dequant({codes, scale, p.scale_dtype, p.n_rows, p.n_cols, out},
                                      stream_.get());
    download(p.out, out, n * 2);
  }

  void fp4_block_dequant(const kernels::Fp4BlockDequantParams& p) override {
    bind();
    kernels::fp4_block_dequant_check(p);
    const uint64_t n = uint64_t(p.n_rows * p.n_cols);
    uint8_t* packed = upload(in_a_, p.packed, n / 2);
    uint8_t* scale = upload(in_b_, p.scale, n / 32);
    out_a_.grow(n * 2);
    auto* out = reinterpret_cast<uint16_t*>(out_a_.get());
    kernels::launch_fp4_block_dequant({packed, scale, p.n_rows, p.n_cols, out}, stream_.get());
    download(p.out, out, n * 2);
  }

  void nvfp4_amax(const kernels::Nvfp4AmaxParams& p) override {
    bind();
    const uint64_t n_bytes = uint64_t(p.n_elems) * (p.dtype == DType::kF32 ? 4 : 2);
    kernels::Nvfp4AmaxParams d = p;
    d.x = upload(in_a_, p.x, n_bytes);
    d.amax = reinterpret_cast<float*>(upload(small_, p.amax, 4, 0));
    d.n_nonfinite = reinterpret_cast<uint64_t*>(upload(small_, p.n_nonfinite, 8, 8));
    kernels::launch_nvfp4_amax(d, stream_.get());
    download(p.amax, d.amax, 4);
    download(p.n_nonfinite, d.n_nonfinite, 8);
  }

  void nvfp4_quantize(const kernels::Nvfp4QuantizeParams& p) override {
    bind();
    kernels::nvfp4_check_shape(p.n_rows, p.n_cols, p.layout);
    const uint64_t n = uint64_t(p.n_rows * p.n_cols);
    kernels::Nvfp4QuantizeParams d = p;
    d.x = reinterpret_cast<const uint16_t*>(upload(in_a_, p.x, n * 2));
    d.scale_2 = reinterpret_cast<const float*>(upload(small_, p.scale_2, 4, 0));
    out_a_.grow(n / 2);
    out_b_.grow(n / 16);
    d.packed = out_a_.get();
    d.scale = out_b_.get();
    d.n_nonfinite = reinterpret_cast<uint64_t*>(small_.get() + 8);
    kernels::launch_nvfp4_quantize(d, stream_.get());
    download(p.packed, d.packed, n / 2);
    download(p.scale, d.scale, n / 16);
    download(p.n_nonfinite, d.n_nonfinite, 8);
  }

  void mxfp4_e8m0_max(const kernels::Mxfp4E8m0MaxParams& p) override {
    bind();
    kernels::Mxfp4E8m0MaxParams d = p;
    d.e8m0 = upload(in_b_, p.e8m0, uint64_t(p.n_scales));
    d.e8m0_max = reinterpret_cast<uint32_t*>(upload(small_, p.e8m0_max, 4, 0));
    kernels::launch_mxfp4_e8m0_max(d, stream_.get());
    download(p.e8m0_max, d.e8m0_max, 4);
  }

  void mxfp4_to_nvfp4(const kernels::Mxfp4ToNvfp4Params& p) override {
    bind();
    kernels::mxfp4_check_shape(p.n_rows, p.n_cols);
    const uint64_t n = uint64_t(p.n_rows * p.n_cols);
    kernels::Mxfp4ToNvfp4Params d = p;
    d.packed = upload(in_a_, p.packed, n / 2);
    d.e8m0 = upload(in_b_, p.e8m0, n / 32);
    d.e8m0_max = reinterpret_cast<const uint32_t*>(upload(small_, p.e8m0_max, 4, 0));
    d.e8m0_max_pair =
        p.e8m0_max_pair ? reinterpret_cast<const uint32_t*>(upload(small_, p.e8m0_max_pair, 4, 16))
                        : nullptr;
    out_a_.grow(n / 2);
    out_b_.grow(n / 16);
    d.out_packed = out_a_.get();
    d.out_scale = out_b_.get();
    d.out_scale_2 = reinterpret_cast<float*>(small_.get() + 32);
    d.counts = reinterpret_cast<uint64_t*>(small_.get() + 64);
    kernels::launch_mxfp4_to_nvfp4(d, stream_.get());
    download(p.out_packed, d.out_packed, n / 2);
    download(p.out_scale, d.out_scale, n / 16);
    download(p.out_scale_2, d.out_scale_2, 4);
    download(p.counts, d.counts, 8 * kernels::kMxfp4CountSlots);
  }

 private:
  // The current device is per thread: select ours before touching the stream or the buffers.
  void bind() const { QF_CUDA_CHECK(cudaSetDevice(device_), "selecting CUDA device", device_); }
  // Copies n bytes of host `src` into `buf` (grown) at `offset`; returns the device pointer.
  uint8_t* upload(DeviceBuffer<uint8_t>& buf, const void* src, uint64_t n, uint64_t offset = 0) {
    buf.grow(std::max<uint64_t>(offset + n, &buf == &small_ ? 256 : 1));
    QF_CUDA_CHECK(
        cudaMemcpyAsync(buf.get() + offset, src, n, cudaMemcpyHostToDevice, stream_.get()),
        "NVFP4 input upload of", n, "bytes");
    return buf.get() + offset;
  }
  void download(void* dst, const void* src, uint64_t n) {
    QF_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream_.get()),
                  "NVFP4 output download of", n, "bytes");
    stream_.synchronize("NVFP4 kernel");
  }

  int device_ = 0;
  CudaStream stream_;
  DeviceBuffer<uint8_t> in_a_, in_b_, out_a_, out_b_, small_;
};

}  // namespace

std::unique_ptr<Nvfp4Ops> make_cuda_nvfp4_ops() { return std::make_unique<CudaNvfp4Ops>(); }

}  // namespace qf::gpu
