// PlannedGemm: the routed-expert GEMMs (BF16 in, FP32 accumulate and out, as gemm_bf16) with the
// cuBLASLt algorithm chosen once per (n, k, strides, row bucket) and reused. Every expert has its
// own row count, and cublasGemmEx runs cuBLAS' heuristic for each shape it has not met: ~75 µs
// of host time per GEMM on an H100 (bench_expert_gemm "varied"), more than the GEMM itself, so
// the MoE ran at 70-225 TFLOP/s instead of 550-680 for the same shapes seen twice.
// Owns: a cuBLASLt handle, the algorithm cache, a workspace. Bound to one stream (one lane).
// Results: deterministic for a given m (the algorithm depends on m's bucket only, split-K off),
// not necessarily bit-equal to gemm_bf16's (another algorithm may sum in another order).
#pragma once
#ifdef QF_HAVE_CUDA
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "core/cuda_raii.hpp"
#include "gpu/cublas_handle.hpp"

namespace qf::gpu {

class PlannedGemm {
 public:
  explicit PlannedGemm(cudaStream_t stream);
  ~PlannedGemm();
  PlannedGemm(const PlannedGemm&) = delete;
  PlannedGemm& operator=(const PlannedGemm&) = delete;

  // y = x * w^T as gemm_bf16: x BF16 [m, k] (row stride ldx), w BF16 [n, k], y FP32 [m, n]
  // (row stride ldy); m == 0 is a no-op. Falls back to cublasGemmEx (through `fallback`) where
  // no planned algorithm applies (unaligned pointers, or cuBLASLt declines the shape).
  // beta as gemm_bf16 (1: accumulate into y).
  void bf16(const CublasHandle& fallback, const uint16_t* x, int64_t ldx, const uint16_t* w,
            float* y, int64_t ldy, int64_t m, int64_t n, int64_t k, float beta = 0.0f);

  // Row bucket of m: the next power of two, at least 16 (the algorithm is planned for it).
  static int64_t bucket_of(int64_t m);
  int64_t n_plans() const { return static_cast<int64_t>(plans_.size()); }
  int64_t n_fallbacks() const { return n_fallbacks_; }

 private:
  struct Plan {
    bool usable = false;
    cublasLtMatmulAlgo_t algo{};
  };
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;  // n, k, ldx, ldy, bucket
  const Plan& plan_for(const Key& key);

  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatmulPreference_t preference_ = nullptr;
  DeviceBuffer<uint8_t> workspace_;
  std::map<Key, Plan> plans_;
  int64_t n_fallbacks_ = 0;
};

}  // namespace qf::gpu
#endif  // QF_HAVE_CUDA
