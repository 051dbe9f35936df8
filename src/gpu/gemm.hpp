// The linear layers of the CUDA forward as cuBLAS calls, in PyTorch's row-major convention:
// y[M, N] = x[M, K] * W[N, K]^T. BF16 inputs with FP32 accumulation and FP32 output for the
// weight GEMMs (weights are exact in BF16: they are the dequantized source values), true FP32
// for the small GEMMs whose outputs pick discrete things (router top-k, mHC Sinkhorn).
// Does not own: weight dequantization (device_layer_weights) or activations' amax.
#pragma once
#ifdef QF_HAVE_CUDA
#include <cstdint>

#include "gpu/cublas_handle.hpp"

namespace qf::gpu {

// y = x * w^T + beta * y; x BF16 [m, k] (row stride ldx), w BF16 [n, k] (row stride k), y FP32
// [m, n] (row stride ldy). m == 0 is a no-op. beta 1 accumulates the products of an input's
// BF16 planes (numerics::float_to_bf16_planes) into one FP32-accurate result.
void gemm_bf16(const CublasHandle& h, const uint16_t* x, int64_t ldx, const uint16_t* w, float* y,
               int64_t ldy, int64_t m, int64_t n, int64_t k, float beta = 0.0f);

// The same in FP32 (x, w, y FP32; contiguous rows).
void gemm_f32(const CublasHandle& h, const float* x, const float* w, float* y, int64_t m, int64_t n,
              int64_t k);

// Block-diagonal grouped projection (attention wo_a): for g in [0, groups):
//   y[:, g*n : (g+1)*n] = x[:, g*k : (g+1)*k] * w[g*n : (g+1)*n, :]^T
// x BF16 [m, groups*k], w BF16 [groups*n, k], y FP32 [m, groups*n].
// beta as gemm_bf16.
void gemm_bf16_grouped(const CublasHandle& h, const uint16_t* x, const uint16_t* w, float* y,
                       int64_t m, int64_t n, int64_t k, int64_t groups, float beta = 0.0f);

// x *= alpha in place (FP32, n elements): the float product, as the reference's `v *= s`.
void scale_f32(const CublasHandle& h, float* x, int64_t n, float alpha);

}  // namespace qf::gpu
#endif  // QF_HAVE_CUDA
