// The NVFP4 kernel calls of weight quantization on host buffers, behind one interface: the CPU
// references (kernels/*_ref.cpp) or the CUDA kernels with device staging (nvfp4_ops_cuda.cu).
// Owns: that dispatch and the worker pool. Does not own which tensors are quantized.
#pragma once
#include <memory>
#include <vector>

#include "dist/compute_backend.hpp"
#include "kernels/dequant.cuh"
#include "kernels/nvfp4_gptq.cuh"
#include "kernels/nvfp4_quantize.cuh"
#include "kernels/nvfp4_search.cuh"

namespace qf::gpu {

// The kernel calls the NVFP4 quantization of weights makes, all on HOST buffers (params as in
// kernels/*.cuh): the CPU references, or the CUDA kernels with the inputs copied in and the
// outputs copied back (bit-identical to the references; tests/kernels check that).
class Nvfp4Ops {
 public:
  virtual ~Nvfp4Ops() = default;
  virtual void fp8_block_dequant(const kernels::Fp8BlockDequantParams& p) = 0;
  virtual void fp4_block_dequant(const kernels::Fp4BlockDequantParams& p) = 0;
  virtual void nvfp4_amax(const kernels::Nvfp4AmaxParams& p) = 0;
  virtual void nvfp4_quantize(const kernels::Nvfp4QuantizeParams& p) = 0;
  virtual void mxfp4_e8m0_max(const kernels::Mxfp4E8m0MaxParams& p) = 0;
  virtual void mxfp4_to_nvfp4(const kernels::Mxfp4ToNvfp4Params& p) = 0;

  // --weight-scale other than max: the searched block scales and GPTQ. The CPU references
  // only: there is no CUDA kernel yet and the quantize job refuses these methods with the cuda
  // backend (numerics/nvfp4_search.hpp pins the roundings such a kernel would have to follow).
  virtual void nvfp4_search_quantize(const kernels::Nvfp4SearchQuantizeParams& p) {
    kernels::nvfp4_search_quantize_ref(p);
  }
  virtual void gptq_inverse_factor(const kernels::GptqFactorParams& p) {
    kernels::gptq_inverse_factor_ref(p);
  }
  virtual void nvfp4_gptq_quantize(const kernels::Nvfp4GptqParams& p) {
    kernels::nvfp4_gptq_quantize_ref(p);
  }
};
// kCpu: the references. kCuda: the current device (CUDA builds; throws otherwise). A CUDA
// Nvfp4Ops remembers that device and may then be used from any thread.
std::unique_ptr<Nvfp4Ops> make_nvfp4_ops(dist::ComputeBackend backend);

// One Nvfp4Ops per worker of quantize_owned_targets (quantize/quantize_weights): the targets of a
// layer are independent, so workers quantize them concurrently (CUDA: one stream and scratch each,
// so one worker's copies overlap another's kernels and host work). n_workers <= 0: the default for
// the backend (CPU: thread_count(); CUDA: up to 8).
class Nvfp4OpsPool {
 public:
  explicit Nvfp4OpsPool(dist::ComputeBackend backend, int n_workers = 0);
  int size() const { return static_cast<int>(ops_.size()); }
  Nvfp4Ops& at(int worker) { return *ops_.at(static_cast<size_t>(worker)); }

 private:
  std::vector<std::unique_ptr<Nvfp4Ops>> ops_;
};

}  // namespace qf::gpu
