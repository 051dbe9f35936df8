// PlannedGemm (planned_gemm.hpp): cuBLASLt with a per-bucket algorithm cache.
#include <limits>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/nvtx.hpp"
#include "gpu/gemm.hpp"
#include "gpu/planned_gemm.hpp"

namespace qf::gpu {
namespace {

constexpr uint64_t kWorkspaceBytes = uint64_t{32} << 20;
// The algorithms are planned for 16-byte aligned operands (what TMA needs); calls whose
// pointers or strides are less aligned take the fallback.
constexpr uint32_t kAlignment = 16;

bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kAlignment == 0; }

// RAII for the B/C layouts of one call (they depend on m).
struct Layout {
  cublasLtMatrixLayout_t get = nullptr;
  Layout(cudaDataType type, int64_t rows, int64_t cols, int64_t ld) {
    QF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&get, type, static_cast<uint64_t>(rows),
                                               static_cast<uint64_t>(cols), ld),
                    "cublasLtMatrixLayoutCreate", rows, "x", cols);
  }
  ~Layout() {
    if (get) cublasLtMatrixLayoutDestroy(get);
  }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

}  // namespace

PlannedGemm::PlannedGemm(cudaStream_t stream) : stream_(stream) {
  QF_CUBLAS_CHECK(cublasLtCreate(&lt_), "cublasLtCreate");
  QF_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                  "cublasLtMatmulDescCreate");
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  QF_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)),
      "matmul desc TRANSA");
  QF_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)),
      "matmul desc TRANSB");
  workspace_.grow(kWorkspaceBytes);
  QF_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference_), "cublasLtMatmulPreferenceCreate");
  const uint64_t ws = kWorkspaceBytes;
  QF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
                      preference_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
                  "preference workspace");
  // No split-K reductions: one algorithm per bucket must give the same bits on every run (a
  // resume compares calibration records bit for bit).
  const uint32_t no_reduction = CUBLASLT_REDUCTION_SCHEME_NONE;
  QF_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(preference_, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                           &no_reduction, sizeof(no_reduction)),
      "preference reduction scheme");
  for (const auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    QF_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(preference_, attr, &kAlignment, sizeof(kAlignment)),
        "preference alignment");
  }
}

PlannedGemm::~PlannedGemm() {
  if (preference_) cublasLtMatmulPreferenceDestroy(preference_);
  if (desc_) cublasLtMatmulDescDestroy(desc_);
  if (lt_ && cublasLtDestroy(lt_) != CUBLAS_STATUS_SUCCESS) log_error("cublasLtDestroy failed");
}

int64_t PlannedGemm::bucket_of(int64_t m) {
  int64_t b = 16;
  while (b < m) b *= 2;
  return b;
}

const PlannedGemm::Plan& PlannedGemm::plan_for(const Key& key) {
  const auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  const auto [n, k, ldx, ldy, bucket] = key;
  Plan plan;
  Layout a(CUDA_R_16BF, k, n, k), b(CUDA_R_16BF, k, bucket, ldx), c(CUDA_R_32F, n, bucket, ldy);
  cublasLtMatmulHeuristicResult_t result{};
  int n_results = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, desc_, a.get, b.get, c.get, c.get,
                                                           preference_, 1, &result, &n_results);
  if (st == CUBLAS_STATUS_SUCCESS && n_results > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    plan.usable = true;
    plan.algo = result.algo;
  } else {
    log_debug("cuBLASLt has no algorithm for BF16 GEMM n=", n, " k=", k, " m<=", bucket,
              "; using cublasGemmEx");
  }
  return plans_.emplace(key, plan).first->second;
}

void PlannedGemm::bf16(const CublasHandle& fallback, const uint16_t* x, int64_t ldx,
                       const uint16_t* w, float* y, int64_t ldy, int64_t m, int64_t n, int64_t k,
                       float beta) {
  QF_NVTX_RANGE("planned_gemm_bf16");
  if (m == 0) return;
  const bool ok_layout = aligned(x) && aligned(w) && aligned(y) && (ldx * 2) % kAlignment == 0 &&
                         (k * 2) % kAlignment == 0 && (ldy * 4) % kAlignment == 0;
  const Plan* plan = ok_layout ? &plan_for({n, k, ldx, ldy, bucket_of(m)}) : nullptr;
  if (plan && plan->usable) {
    Layout a(CUDA_R_16BF, k, n, k), b(CUDA_R_16BF, k, m, ldx), c(CUDA_R_32F, n, m, ldy);
    const float one = 1.0f;
    const cublasStatus_t st =
        cublasLtMatmul(lt_, desc_, &one, w, a.get, x, b.get, &beta, y, c.get, y, c.get, &plan->algo,
                       workspace_.get(), kWorkspaceBytes, stream_);
    if (st == CUBLAS_STATUS_SUCCESS) return;
    // The planned algorithm declined this m (checked before launching: nothing was written).
    QF_CHECK(st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE,
             "cuBLASLt BF16 GEMM", m, "x", n, "x", k, "failed with status", static_cast<int>(st));
  }
  ++n_fallbacks_;
  gemm_bf16(fallback, x, ldx, w, y, ldy, m, n, k, beta);
}

}  // namespace qf::gpu
