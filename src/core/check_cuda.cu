// CUDA, cuBLAS and NCCL error texts for the QF_*_CHECK family (CUDA builds only).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "core/check.hpp"

namespace qf {

void throw_cuda_error(long rc, const char* statement, const char* file, int line,
                      const std::string& message) {
  int device = -1;
  cudaGetDevice(&device);
  throw_error("CUDA call failed", statement, file, line,
              join_message(message, "-", cudaGetErrorString(static_cast<cudaError_t>(rc)),
                           "on device", device));
}

void throw_cublas_error(long rc, const char* statement, const char* file, int line,
                        const std::string& message) {
  throw_error("cuBLAS call failed", statement, file, line,
              join_message(message, "-", cublasGetStatusString(static_cast<cublasStatus_t>(rc))));
}

void throw_nccl_error(long rc, const char* statement, const char* file, int line,
                      const std::string& message) {
  throw_error("NCCL call failed", statement, file, line,
              join_message(message, "-", ncclGetErrorString(static_cast<ncclResult_t>(rc)), "/",
                           ncclGetLastError(nullptr)));
}

}  // namespace qf
