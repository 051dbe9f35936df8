// RAII owner of a cuBLAS handle bound to one stream (CUDA builds only).
// Owns: the handle's lifetime and its stream/math-mode settings. Does not own the stream.
#pragma once
#ifdef QF_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <utility>

#include "core/check.hpp"
#include "core/log.hpp"

namespace qf::gpu {

class CublasHandle {
 public:
  explicit CublasHandle(cudaStream_t stream) {
    QF_CUBLAS_CHECK(cublasCreate(&handle_), "cublasCreate");
    QF_CUBLAS_CHECK(cublasSetStream(handle_, stream), "cublasSetStream");
    // Default math: BF16 GEMMs on tensor cores, FP32 GEMMs in true FP32 (no TF32, which only
    // CUBLAS_TF32_TENSOR_OP_MATH enables): the router and mHC mixes feed top-k / Sinkhorn.
    QF_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  }
  ~CublasHandle() {
    if (!handle_) return;
    if (cublasDestroy(handle_) != CUBLAS_STATUS_SUCCESS) log_error("cublasDestroy failed");
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

}  // namespace qf::gpu
#endif  // QF_HAVE_CUDA
