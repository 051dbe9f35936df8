// The CPU Nvfp4Ops (the reference loops), the backend switch and the worker pool.
#include "gpu/nvfp4_ops.hpp"

#include <algorithm>

#include "core/check.hpp"
#include "core/parallel.hpp"

namespace qf::gpu {
namespace {

class CpuNvfp4Ops final : public Nvfp4Ops {
 public:
  void fp8_block_dequant(const kernels::Fp8BlockDequantParams& p) override {
    kernels::fp8_block_dequant_ref(p);
  }
  void fp4_block_dequant(const kernels::Fp4BlockDequantParams& p) override {
    kernels::fp4_block_dequant_ref(p);
  }
  void nvfp4_amax(const kernels::Nvfp4AmaxParams& p) override { kernels::nvfp4_amax_ref(p); }
  void nvfp4_quantize(const kernels::Nvfp4QuantizeParams& p) override {
    kernels::nvfp4_quantize_ref(p);
  }
  void mxfp4_e8m0_max(const kernels::Mxfp4E8m0MaxParams& p) override {
    kernels::mxfp4_e8m0_max_ref(p);
  }
  void mxfp4_to_nvfp4(const kernels::Mxfp4ToNvfp4Params& p) override {
    kernels::mxfp4_to_nvfp4_ref(p);
  }
};

}  // namespace

#ifdef QF_HAVE_CUDA
std::unique_ptr<Nvfp4Ops> make_cuda_nvfp4_ops();  // nvfp4_ops_cuda.cu
#endif

std::unique_ptr<Nvfp4Ops> make_nvfp4_ops(dist::ComputeBackend backend) {
  if (backend == dist::ComputeBackend::kCpu) return std::make_unique<CpuNvfp4Ops>();
#ifdef QF_HAVE_CUDA
  return make_cuda_nvfp4_ops();
#else
  QF_FAIL("NVFP4 quantization: this build has no CUDA backend");
#endif
}

Nvfp4OpsPool::Nvfp4OpsPool(dist::ComputeBackend backend, int n_workers) {
  if (n_workers <= 0) {
    // CUDA: a few streams hide each other's copies; more only add scratch and contention.
    const int64_t threads = thread_count();
    n_workers = static_cast<int>(
        backend == dist::ComputeBackend::kCpu ? threads : std::min<int64_t>(8, threads));
  }
  for (int i = 0; i < std::max(1, n_workers); ++i) ops_.push_back(make_nvfp4_ops(backend));
}

}  // namespace qf::gpu
