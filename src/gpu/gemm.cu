// cuBLAS calls of gemm.hpp. Row-major y = x W^T is column-major y^T = W x^T: cuBLAS sees
// A = W (k x n, transposed), B = x (k x m), C = y^T (n x m).
#include <limits>

#include "core/nvtx.hpp"
#include "gpu/gemm.hpp"

namespace qf::gpu {
namespace {

int as_int(int64_t v, const char* what) {
  QF_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), "GEMM", what, "=", v,
           "does not fit cuBLAS' int");
  return static_cast<int>(v);
}

}  // namespace

void gemm_bf16(const CublasHandle& h, const uint16_t* x, int64_t ldx, const uint16_t* w, float* y,
               int64_t ldy, int64_t m, int64_t n, int64_t k, float beta) {
  QF_NVTX_RANGE("gemm_bf16");
  if (m == 0) return;
  const float one = 1.0f;
  QF_CUBLAS_CHECK(cublasGemmEx(h.get(), CUBLAS_OP_T, CUBLAS_OP_N, as_int(n, "n"), as_int(m, "m"),
                               as_int(k, "k"), &one, w, CUDA_R_16BF, as_int(k, "ldw"), x,
                               CUDA_R_16BF, as_int(ldx, "ldx"), &beta, y, CUDA_R_32F,
                               as_int(ldy, "ldy"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  "BF16 GEMM", m, "x", n, "x", k);
}

void gemm_f32(const CublasHandle& h, const float* x, const float* w, float* y, int64_t m, int64_t n,
              int64_t k) {
  QF_NVTX_RANGE("gemm_f32");
  if (m == 0) return;
  const float one = 1.0f, zero = 0.0f;
  QF_CUBLAS_CHECK(
      cublasSgemm(h.get(), CUBLAS_OP_T, CUBLAS_OP_N, as_int(n, "n"), as_int(m, "m"), as_int(k, "k"),
                  &one, w, as_int(k, "ldw"), x, as_int(k, "ldx"), &zero, y, as_int(n, "ldy")),
      "FP32 GEMM", m, "x", n, "x", k);
}

void gemm_bf16_grouped(const CublasHandle& h, const uint16_t* x, const uint16_t* w, float* y,
                       int64_t m, int64_t n, int64_t k, int64_t groups, float beta) {
  QF_NVTX_RANGE("gemm_bf16_grouped");
  if (m == 0) return;
  const float one = 1.0f;
  QF_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
                      h.get(), CUBLAS_OP_T, CUBLAS_OP_N, as_int(n, "n"), as_int(m, "m"),
                      as_int(k, "k"), &one, w, CUDA_R_16BF, as_int(k, "ldw"), n * k, x, CUDA_R_16BF,
                      as_int(groups * k, "ldx"), k, &beta, y, CUDA_R_32F, as_int(groups * n, "ldy"),
                      n, as_int(groups, "groups"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  "grouped BF16 GEMM", groups, "x", m, "x", n, "x", k);
}

void scale_f32(const CublasHandle& h, float* x, int64_t n, float alpha) {
  QF_NVTX_RANGE("scale_f32");
  if (n == 0) return;
  QF_CUBLAS_CHECK(cublasSscal(h.get(), as_int(n, "n"), &alpha, x, 1), "scale of", n, "floats");
}

}  // namespace qf::gpu
