// MoE routing kernels of the CUDA calibration forward: router scores and top-k (or hash table),
// the dispatch of (token, slot) assignments into expert-sorted rows, the gather of those rows as
// BF16 with per-expert amax, and the weighted combine. Declares params, CPU references (*_ref,
// always built; routing calls ops::router_score and follows model::route_tokens /
// model::moe_forward) and launchers (CUDA builds). Does not own: the expert GEMMs (src/gpu).
#pragma once
#include <cstddef>
#include <cstdint>

#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qf::kernels {

enum class RouterScoring : int32_t { kSqrtSoftplus = 0, kSigmoid = 1 };

// ---- routing (model::route_tokens after the gate GEMM)
// ------------------------------------------- score = router_score(logit); selection:
// tid2eid[token_ids[t]] (hash, tid2eid non-null) or top-k of score + gate_bias, ties to the lower
// expert id; weights = score[sel] / (sum of the k selected scores + 1e-20) * routed_scaling. Token
// ids outside [0, vocab) set *error_flag = 1. (Hash layers: so does a tid2eid entry outside [0,
// n_experts); such a token gets expert 0 with weight 0 in every slot. gate_bias may be null: no
// bias.)
struct RouteParams {
  const float* logits = nullptr;       // [n_tokens, n_experts] FP32
  const float* gate_bias = nullptr;    // [n_experts] (top-k layers)
  const int32_t* tid2eid = nullptr;    // [vocab, top_k] (hash layers) or null
  const int64_t* token_ids = nullptr;  // [n_tokens] (hash layers)
  int64_t n_tokens = 0, n_experts = 0, top_k = 0, vocab = 0;
  RouterScoring scoring = RouterScoring::kSqrtSoftplus;
  float routed_scaling = 1.0f;
  int32_t* experts = nullptr;     // [n_tokens, top_k] out
  float* weights = nullptr;       // [n_tokens, top_k] out
  int32_t* error_flag = nullptr;  // [1] out (not cleared: caller zeroes it)
};

// ---- dispatch: assignments grouped by expert
// ------------------------------------------------------ Rows of expert e are expert_offsets[e] ..
// expert_offsets[e+1]; within an expert, slot-major then token (torch.where(mask[e]) order, the CPU
// reference's). row_token / row_slot name each row's assignment; token_row[t * top_k + s] is the
// row of assignment (t, s). Expert ids outside [0, n_experts) set *error_flag = 1 and get no row
// (token_row = -1, not counted in the offsets).
struct MoeDispatchParams {
  const int32_t* experts = nullptr;  // [n_tokens, top_k]
  int64_t n_tokens = 0, top_k = 0, n_experts = 0;
  int32_t* expert_offsets = nullptr;  // [n_experts + 1] out
  int32_t* row_token = nullptr;       // [n_tokens * top_k] out
  int32_t* row_slot = nullptr;        // [n_tokens * top_k] out
  int32_t* token_row = nullptr;       // [n_tokens * top_k] out
  int32_t* error_flag = nullptr;      // [1] out (not cleared)
  void* workspace = nullptr;          // device scratch of moe_dispatch_workspace_bytes(p)
};
size_t moe_dispatch_workspace_bytes(const MoeDispatchParams& p);

// ---- gather: rows[i, :] = bf16(x[row_token[i], :]); amax per expert
// ------------------------------ amax_bits[e] = max over the rows of expert e of bits(|x|)
// (forward_ops.cuh amax slots). Rows i >= expert_offsets[n_experts] (read on the device) are left
// untouched, so n_rows may be the n_tokens * top_k bound. NaN is written as BF16 0x7FC0.
struct MoeGatherParams {
  const float* x = nullptr;  // [n_tokens, dim]
  const int32_t* row_token = nullptr;
  const int32_t* expert_offsets = nullptr;  // [n_experts + 1]
  int64_t n_rows = 0, dim = 0, n_experts = 0;
  uint16_t* rows_bf16 = nullptr;  // [n_rows, dim]
  uint32_t* amax_bits = nullptr;  // [n_experts] (accumulated with atomicMax) or null
};

// ---- combine (model::moe_forward's accumulation order)
// -------------------------------------------- out[t, :] = shared[t, :] + sum over t's assignments,
// in ascending (expert, slot) order starting from 0.0f, of weights[t, s] * y[token_row[t * top_k +
// s], :]; i.e. exactly
// ((0 + w_a*y_a) + w_b*y_b) + ... then + shared, as the reference does. Assignments with
// token_row < 0 (dropped by the dispatch) are skipped.
struct MoeCombineParams {
  const float* y = nullptr;  // [n_tokens * top_k, dim]: expert outputs per row
  const int32_t* experts = nullptr;
  const float* weights = nullptr;
  const int32_t* token_row = nullptr;
  const float* shared = nullptr;  // [n_tokens, dim] or null
  int64_t n_tokens = 0, top_k = 0, dim = 0;
  float* out = nullptr;  // [n_tokens, dim]
};

// ---- CPU references (moe_routing_ref.cpp)
// ---------------------------------------------------------
void route_ref(const RouteParams& p);
void moe_dispatch_ref(const MoeDispatchParams& p);  // workspace unused
void moe_gather_ref(const MoeGatherParams& p);
void moe_combine_ref(const MoeCombineParams& p);

#ifdef QF_HAVE_CUDA
void launch_route(const RouteParams& p, cudaStream_t stream);
void launch_moe_dispatch(const MoeDispatchParams& p, cudaStream_t stream);
void launch_moe_gather(const MoeGatherParams& p, cudaStream_t stream);
void launch_moe_combine(const MoeCombineParams& p, cudaStream_t stream);
#endif

}  // namespace qf::kernels
