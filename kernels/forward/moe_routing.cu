// CUDA kernels and launchers of the MoE routing family (declared in moe_routing.cuh):
// warp-per-token router top-k, a deterministic three-pass counting sort for the dispatch, the BF16
// row gather with per-expert amax and the block-per-token combine. Every output is bit-identical to
// the CPU reference except the router scores (device expf/log1pf may differ from host libm by an
// ulp).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/forward/moe_routing.cuh"
#include "kernels/launch_util.cuh"
#include "numerics/bf16.hpp"
#include "numerics/block_dequant.hpp"

namespace qf::kernels {

using namespace qf::numerics;

namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xFFFFFFFFu;

constexpr int kRouteWarps = 8;  // tokens per block
constexpr int kRouteMaxExperts = 384;
constexpr int kRoutePerLane = kRouteMaxExperts / kWarp;
constexpr int kRouteMaxTopK = 8;

constexpr int kDispatchWarps = 8;
constexpr int kDispatchMaxExperts = 1024;  // one scan thread per expert
constexpr int64_t kDispatchMinChunk = 256;
constexpr int64_t kDispatchMaxChunks = 512;  // bounds the per-expert scan loop and the workspace

constexpr int kGatherThreads = 256;
constexpr int kCombineThreads = 256;
constexpr int kCombineMaxTopK = 8;

// Assignments per dispatch chunk (one warp each): at least kDispatchMinChunk, a multiple of the
// warp, and few enough chunks that the single-block scan stays short.
int64_t dispatch_chunk(int64_t n_assign) {
  const int64_t chunk = std::max(kDispatchMinChunk, ceil_div(n_assign, kDispatchMaxChunks));
  return round_up(chunk, kWarp);
}

// ops::router_score with the device libm (expf/log1pf may differ from glibc by an ulp).
__device__ __forceinline__ float router_score_dev(RouterScoring scoring, float x) {
  if (scoring == RouterScoring::kSigmoid) return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x)));
  const float softplus = x > 20.0f ? x : log1pf(expf(x));
  return sqrtf(softplus);
}

// The reference's partial_sort order: higher value first, ties to the lower expert id.
__device__ __forceinline__ bool ranks_before(float va, int ia, float vb, int ib) {
  return va > vb || (va == vb && ia < ib);
}

__device__ __forceinline__ uint16_t to_bf16(float x) {
  return is_nan_bits(float_to_bits(x)) ? kBf16CanonicalNan : float_to_bf16(x);
}

__device__ __forceinline__ uint32_t abs_bits(float x) { return float_to_bits(x) & 0x7FFFFFFFu; }

}  // namespace

// ---- routing: one warp per token -------------------------------------------------------------
// Top-k: lane l holds experts l, l+32, ...; k rounds of a warp arg-max (ranks_before), the winner
// removed from its lane each round. The result equals the reference's partial_sort because
// ranks_before is a strict total order (for non-NaN scores; NaN logits give an unspecified order
// on both sides).
static __global__ void route_kernel(RouteParams p) {
  const int lane = threadIdx.x % kWarp;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kRouteWarps + threadIdx.x / kWarp;
  if (t >= p.n_tokens) return;  // whole warps only
  const int n_exp = static_cast<int>(p.n_experts), k = static_cast<int>(p.top_k);
  const float* logits = p.logits + t * p.n_experts;
  int32_t sel[kRouteMaxTopK];
  float sel_score[kRouteMaxTopK];

  if (p.tid2eid != nullptr) {
    const int64_t id = p.token_ids[t];
    bool ok = id >= 0 && id < p.vocab;
    int32_t e = 0;
    if (ok && lane < k) {
      e = p.tid2eid[id * k + lane];
      ok = e >= 0 && e < n_exp;
    }
    if (!__all_sync(kFullMask, ok)) {  // as route_ref: expert 0, weight 0, flag
      if (lane == 0) *p.error_flag = 1;
      if (lane < k) {
        p.experts[t * k + lane] = 0;
        p.weights[t * k + lane] = 0.0f;
      }
      return;
    }
    const float score = lane < k ? router_score_dev(p.scoring, logits[e]) : 0.0f;
#pragma unroll
    for (int s = 0; s < kRouteMaxTopK; ++s) {
      sel[s] = __shfl_sync(kFullMask, e, s);
      sel_score[s] = __shfl_sync(kFullMask, score, s);
    }
  } else {
    float score[kRoutePerLane], biased[kRoutePerLane];
#pragma unroll
    for (int j = 0; j < kRoutePerLane; ++j) {
      const int e = lane + j * kWarp;
      score[j] = 0.0f;
      biased[j] = 0.0f;
      if (e < n_exp) {
        score[j] = router_score_dev(p.scoring, logits[e]);
        biased[j] = __fadd_rn(score[j], p.gate_bias != nullptr ? p.gate_bias[e] : 0.0f);
      }
    }
    uint32_t taken = 0;  // bit j: expert lane + 32 j already selected
#pragma unroll
    for (int s = 0; s < kRouteMaxTopK; ++s) {
      if (s >= k) break;
      float best_v = -INFINITY, best_score = 0.0f;
      int best_i = INT_MAX;
#pragma unroll
      for (int j = 0; j < kRoutePerLane; ++j) {
        const int e = lane + j * kWarp;
        if (e < n_exp && !((taken >> j) & 1u) && ranks_before(biased[j], e, best_v, best_i)) {
          best_v = biased[j];
          best_i = e;
          best_score = score[j];
        }
      }
#pragma unroll
      for (int offset = kWarp / 2; offset > 0; offset /= 2) {
        const float v = __shfl_xor_sync(kFullMask, best_v, offset);
        const int i = __shfl_xor_sync(kFullMask, best_i, offset);
        const float sc = __shfl_xor_sync(kFullMask, best_score, offset);
        if (ranks_before(v, i, best_v, best_i)) {
          best_v = v;
          best_i = i;
          best_score = sc;
        }
      }
      // Lane 0's view decides, so the lanes agree even if NaNs break the total order.
      best_i = __shfl_sync(kFullMask, best_i, 0);
      best_score = __shfl_sync(kFullMask, best_score, 0);
      if (best_i % kWarp == lane) taken |= 1u << (best_i / kWarp);
      sel[s] = best_i;
      sel_score[s] = best_score;
    }
  }

  if (lane != 0) return;
  float sum = 0.0f;
#pragma unroll
  for (int s = 0; s < kRouteMaxTopK; ++s) {
    if (s < k) sum = __fadd_rn(sum, sel_score[s]);
  }
  const float denom = __fadd_rn(sum, 1e-20f);
#pragma unroll
  for (int s = 0; s < kRouteMaxTopK; ++s) {
    if (s >= k) break;
    p.experts[t * k + s] = sel[s];
    p.weights[t * k + s] = __fmul_rn(__fdiv_rn(sel_score[s], denom), p.routed_scaling);
  }
}

// ---- dispatch: stable counting sort of assignments j = s * n_tokens + t by expert -----------
// Pass 1 (one warp per chunk of j): per-chunk expert histogram -> counts[chunk][e].
// Pass 2 (one block): expert totals, exclusive scan -> expert_offsets, and counts[chunk][e]
//   rewritten in place as the first row of expert e for that chunk.
// Pass 3 (one warp per chunk): walk the chunk in j order 32 at a time; __match_any_sync ranks
//   equal experts by lane, so the placement is stable and independent of scheduling.
static __global__ void dispatch_count_kernel(MoeDispatchParams p, int64_t chunk, int64_t n_chunks,
                                             int32_t* counts) {
  extern __shared__ int32_t smem_count[];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kDispatchWarps + warp;
  if (c >= n_chunks) return;
  const int n_exp = static_cast<int>(p.n_experts);
  int32_t* cnt = smem_count + warp * n_exp;
  for (int e = lane; e < n_exp; e += kWarp) cnt[e] = 0;
  __syncwarp();
  const uint32_t n_tokens = static_cast<uint32_t>(p.n_tokens);
  const uint32_t k = static_cast<uint32_t>(p.top_k);
  const uint32_t end = static_cast<uint32_t>(min((c + 1) * chunk, p.n_tokens * p.top_k));
  bool bad = false;
  for (uint32_t j = static_cast<uint32_t>(c * chunk) + lane; j < end; j += kWarp) {
    const uint32_t s = j / n_tokens, t = j - s * n_tokens;
    const int32_t e = p.experts[t * k + s];
    if (e >= 0 && e < n_exp) {
      atomicAdd(&cnt[e], 1);  // counts only: order-free
    } else {
      bad = true;
    }
  }
  if (bad) *p.error_flag = 1;
  __syncwarp();
  for (int e = lane; e < n_exp; e += kWarp) counts[c * n_exp + e] = cnt[e];
}

static __global__ void dispatch_scan_kernel(MoeDispatchParams p, int64_t n_chunks,
                                            int32_t* counts) {
  __shared__ int32_t warp_sums[kDispatchMaxExperts / kWarp];
  const int e = threadIdx.x, lane = e % kWarp, warp = e / kWarp;
  const int n_exp = static_cast<int>(p.n_experts);
  int32_t total = 0;
  if (e < n_exp) {
    for (int64_t c = 0; c < n_chunks; ++c) total += counts[c * n_exp + e];
  }
  // Block exclusive scan of the totals over e.
  int32_t incl = total;
#pragma unroll
  for (int offset = 1; offset < kWarp; offset *= 2) {
    const int32_t v = __shfl_up_sync(kFullMask, incl, offset);
    if (lane >= offset) incl += v;
  }
  if (lane == kWarp - 1) warp_sums[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int n_warps = blockDim.x / kWarp;
    int32_t w = lane < n_warps ? warp_sums[lane] : 0;
#pragma unroll
    for (int offset = 1; offset < kWarp; offset *= 2) {
      const int32_t v = __shfl_up_sync(kFullMask, w, offset);
      if (lane >= offset) w += v;
    }
    if (lane < n_warps) warp_sums[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  const int32_t offset = incl - total + (warp > 0 ? warp_sums[warp - 1] : 0);
  if (e < n_exp) {
    p.expert_offsets[e] = offset;
    if (e == n_exp - 1) p.expert_offsets[n_exp] = offset + total;
    int32_t running = offset;
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int32_t v = counts[c * n_exp + e];
      counts[c * n_exp + e] = running;
      running += v;
    }
  }
}

static __global__ void dispatch_place_kernel(MoeDispatchParams p, int64_t chunk, int64_t n_chunks,
                                             const int32_t* first_row) {
  extern __shared__ int32_t smem_next[];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kDispatchWarps + warp;
  if (c >= n_chunks) return;
  const int n_exp = static_cast<int>(p.n_experts);
  int32_t* next = smem_next + warp * n_exp;
  for (int e = lane; e < n_exp; e += kWarp) next[e] = first_row[c * n_exp + e];
  __syncwarp();
  const uint32_t n_tokens = static_cast<uint32_t>(p.n_tokens);
  const uint32_t k = static_cast<uint32_t>(p.top_k);
  const uint32_t begin = static_cast<uint32_t>(c * chunk);
  const uint32_t end = static_cast<uint32_t>(min((c + 1) * chunk, p.n_tokens * p.top_k));
  const uint32_t lanes_below = (1u << lane) - 1u;
  for (uint32_t base = begin; base < end; base += kWarp) {  // uniform trip count
    const uint32_t j = base + lane;
    const bool active = j < end;
    const uint32_t s = active ? j / n_tokens : 0, t = active ? j - s * n_tokens : 0;
    const int32_t e = active ? p.experts[t * k + s] : -1;
    const bool valid = active && e >= 0 && e < n_exp;
    const uint32_t peers = __match_any_sync(kFullMask, valid ? e : -1);
    const int32_t rank = __popc(peers & lanes_below);
    if (valid) {
      const int32_t row = next[e] + rank;
      p.row_token[row] = static_cast<int32_t>(t);
      p.row_slot[row] = static_cast<int32_t>(s);
      p.token_row[t * k + s] = row;
    } else if (active) {
      p.token_row[t * k + s] = -1;  // bad expert id: no row (flagged by pass 1)
    }
    __syncwarp();
    if (valid && rank == 0) next[e] += __popc(peers);
    __syncwarp();
  }
}

// ---- gather: one block per row ------------------------------------------------------------------
template <bool kVec>
static __global__ void moe_gather_kernel(MoeGatherParams p) {
  __shared__ uint32_t warp_amax[kGatherThreads / kWarp];
  const int64_t i = blockIdx.x;
  if (i >= p.expert_offsets[p.n_experts]) return;  // past the dispatched rows (block-uniform)
  const float* src = p.x + static_cast<int64_t>(p.row_token[i]) * p.dim;
  uint16_t* dst = p.rows_bf16 + i * p.dim;
  uint32_t amax = 0;
  if constexpr (kVec) {
    const float4* src4 = reinterpret_cast<const float4*>(src);
    uint2* dst4 = reinterpret_cast<uint2*>(dst);
    for (int64_t v = threadIdx.x; v < p.dim / 4; v += blockDim.x) {
      const float4 x = src4[v];
      amax = max(max(amax, abs_bits(x.x)), max(abs_bits(x.y), max(abs_bits(x.z), abs_bits(x.w))));
      dst4[v] = make_uint2(to_bf16(x.x) | (static_cast<uint32_t>(to_bf16(x.y)) << 16),
                           to_bf16(x.z) | (static_cast<uint32_t>(to_bf16(x.w)) << 16));
    }
  } else {
    for (int64_t d = threadIdx.x; d < p.dim; d += blockDim.x) {
      const float x = src[d];
      amax = max(amax, abs_bits(x));
      dst[d] = to_bf16(x);
    }
  }
  if (p.amax_bits == nullptr) return;
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    amax = max(amax, __shfl_xor_sync(kFullMask, amax, offset));
  if (threadIdx.x % kWarp == 0) warp_amax[threadIdx.x / kWarp] = amax;
  __syncthreads();
  if (threadIdx.x != 0) return;
  for (int w = 1; w < kGatherThreads / kWarp; ++w) amax = max(amax, warp_amax[w]);
  // Owner of row i: the largest e with expert_offsets[e] <= i (empty experts share offsets).
  int lo = 0, hi = static_cast<int>(p.n_experts) - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (p.expert_offsets[mid] <= i) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  atomicMax(p.amax_bits + lo, amax);
}

// ---- combine: one block per token ---------------------------------------------------------------
// Thread 0 orders the token's assignments by (expert, slot); every thread then accumulates its
// columns in that order with round-to-nearest mul and add (no FMA contraction), as the CPU does.
template <bool kVec>
static __global__ void moe_combine_kernel(MoeCombineParams p) {
  __shared__ int32_t s_row[kCombineMaxTopK];
  __shared__ float s_weight[kCombineMaxTopK];
  __shared__ int s_n;
  const int64_t t = blockIdx.x;
  const int k = static_cast<int>(p.top_k);
  if (threadIdx.x == 0) {
    int32_t key[kCombineMaxTopK];
    int n = 0;
    for (int s = 0; s < k; ++s) {
      const int32_t row = p.token_row[t * k + s];
      if (row < 0) continue;
      const int32_t e = p.experts[t * k + s];
      int pos = n++;
      for (; pos > 0 && key[pos - 1] > e; --pos) {  // stable: equal experts keep slot order
        key[pos] = key[pos - 1];
        s_row[pos] = s_row[pos - 1];
        s_weight[pos] = s_weight[pos - 1];
      }
      key[pos] = e;
      s_row[pos] = row;
      s_weight[pos] = p.weights[t * k + s];
    }
    s_n = n;
  }
  __syncthreads();
  const int n = s_n;
  const int64_t dim = p.dim;
  if constexpr (kVec) {
    for (int64_t v = threadIdx.x; v < dim / 4; v += blockDim.x) {
      float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      for (int m = 0; m < n; ++m) {
        const float4 y = reinterpret_cast<const float4*>(p.y + s_row[m] * dim)[v];
        const float w = s_weight[m];
        acc.x = __fadd_rn(acc.x, __fmul_rn(y.x, w));
        acc.y = __fadd_rn(acc.y, __fmul_rn(y.y, w));
        acc.z = __fadd_rn(acc.z, __fmul_rn(y.z, w));
        acc.w = __fadd_rn(acc.w, __fmul_rn(y.w, w));
      }
      if (p.shared != nullptr) {
        const float4 sh = reinterpret_cast<const float4*>(p.shared + t * dim)[v];
        acc.x = __fadd_rn(acc.x, sh.x);
        acc.y = __fadd_rn(acc.y, sh.y);
        acc.z = __fadd_rn(acc.z, sh.z);
        acc.w = __fadd_rn(acc.w, sh.w);
      }
      reinterpret_cast<float4*>(p.out + t * dim)[v] = acc;
    }
  } else {
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
      float acc = 0.0f;
      for (int m = 0; m < n; ++m)
        acc = __fadd_rn(acc, __fmul_rn(p.y[s_row[m] * dim + d], s_weight[m]));
      if (p.shared != nullptr) acc = __fadd_rn(acc, p.shared[t * dim + d]);
      p.out[t * dim + d] = acc;
    }
  }
}

// ---- launchers ----------------------------------------------------------------------------------

void launch_route(const RouteParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_route");
  QF_CHECK(p.n_tokens >= 0 && p.n_experts > 0 && p.n_experts <= kRouteMaxExperts,
           "route: n_experts", p.n_experts, "outside [1,", kRouteMaxExperts, "]");
  QF_CHECK(p.top_k > 0 && p.top_k <= kRouteMaxTopK && p.top_k <= p.n_experts, "route: top_k",
           p.top_k, "outside [1,", kRouteMaxTopK, "] or above n_experts", p.n_experts);
  QF_CHECK(p.logits != nullptr && p.experts != nullptr && p.weights != nullptr,
           "route: null buffer");
  QF_CHECK(
      p.tid2eid == nullptr || (p.token_ids != nullptr && p.error_flag != nullptr && p.vocab > 0),
      "route: hash routing needs token_ids, vocab and error_flag");
  if (p.n_tokens == 0) return;
  const unsigned grid = grid_x(ceil_div(p.n_tokens, kRouteWarps), "route");
  route_kernel<<<grid, kRouteWarps * kWarp, 0, stream>>>(p);
  QF_KERNEL_CHECK();
}

size_t moe_dispatch_workspace_bytes(const MoeDispatchParams& p) {
  const int64_t n_assign = p.n_tokens * p.top_k;
  if (n_assign <= 0) return 0;
  const int64_t n_chunks = ceil_div(n_assign, dispatch_chunk(n_assign));
  return static_cast<size_t>(n_chunks * p.n_experts) * sizeof(int32_t);
}

void launch_moe_dispatch(const MoeDispatchParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_moe_dispatch");
  QF_CHECK(p.n_experts > 0 && p.n_experts <= kDispatchMaxExperts, "moe dispatch: n_experts",
           p.n_experts, "outside [1,", kDispatchMaxExperts, "]");
  QF_CHECK(p.n_tokens >= 0 && p.top_k > 0, "moe dispatch: n_tokens", p.n_tokens, "top_k", p.top_k);
  const int64_t n_assign = p.n_tokens * p.top_k;
  QF_CHECK(n_assign < (int64_t{1} << 31) - 2 * kDispatchMinChunk, "moe dispatch:", n_assign,
           "assignments overflow the 32-bit row index");
  QF_CHECK(p.expert_offsets != nullptr && p.error_flag != nullptr, "moe dispatch: null buffer");
  QF_CHECK(n_assign == 0 || (p.experts != nullptr && p.row_token != nullptr &&
                             p.row_slot != nullptr && p.token_row != nullptr),
           "moe dispatch: null buffer");
  const int64_t chunk = n_assign > 0 ? dispatch_chunk(n_assign) : kDispatchMinChunk;
  const int64_t n_chunks = ceil_div(n_assign, chunk);
  QF_CHECK(n_chunks == 0 || p.workspace != nullptr, "moe dispatch: workspace of",
           moe_dispatch_workspace_bytes(p), "bytes missing");
  auto* counts = static_cast<int32_t*>(p.workspace);
  const size_t smem = static_cast<size_t>(kDispatchWarps * p.n_experts) * sizeof(int32_t);
  const unsigned n_blocks = static_cast<unsigned>(ceil_div(n_chunks, kDispatchWarps));
  if (n_chunks > 0) {
    dispatch_count_kernel<<<n_blocks, kDispatchWarps * kWarp, smem, stream>>>(p, chunk, n_chunks,
                                                                              counts);
    QF_KERNEL_CHECK();
  }
  const int scan_threads = static_cast<int>(round_up(p.n_experts, kWarp));
  dispatch_scan_kernel<<<1, scan_threads, 0, stream>>>(p, n_chunks, counts);
  QF_KERNEL_CHECK();
  if (n_chunks > 0) {
    dispatch_place_kernel<<<n_blocks, kDispatchWarps * kWarp, smem, stream>>>(p, chunk, n_chunks,
                                                                              counts);
    QF_KERNEL_CHECK();
  }
}

void launch_moe_gather(const MoeGatherParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_moe_gather");
  QF_CHECK(p.n_rows >= 0 && p.dim > 0 && p.n_experts > 0, "moe gather: n_rows", p.n_rows, "dim",
           p.dim, "n_experts", p.n_experts);
  QF_CHECK(p.n_rows <= INT_MAX, "moe gather: too many rows", p.n_rows);
  QF_CHECK(p.x != nullptr && p.row_token != nullptr && p.expert_offsets != nullptr &&
               p.rows_bf16 != nullptr,
           "moe gather: null buffer");
  if (p.n_rows == 0) return;
  const bool vec = p.dim % 4 == 0 && is_aligned(p.x, 16) && is_aligned(p.rows_bf16, 8);
  const unsigned grid = static_cast<unsigned>(p.n_rows);
  if (vec) {
    moe_gather_kernel<true><<<grid, kGatherThreads, 0, stream>>>(p);
  } else {
    moe_gather_kernel<false><<<grid, kGatherThreads, 0, stream>>>(p);
  }
  QF_KERNEL_CHECK();
}

void launch_moe_combine(const MoeCombineParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_moe_combine");
  QF_CHECK(p.n_tokens >= 0 && p.dim > 0 && p.top_k > 0 && p.top_k <= kCombineMaxTopK,
           "moe combine: n_tokens", p.n_tokens, "dim", p.dim, "top_k", p.top_k);
  QF_CHECK(p.n_tokens <= INT_MAX, "moe combine: too many tokens", p.n_tokens);
  QF_CHECK(p.y != nullptr && p.experts != nullptr && p.weights != nullptr &&
               p.token_row != nullptr && p.out != nullptr,
           "moe combine: null buffer");
  if (p.n_tokens == 0) return;
  const bool vec = p.dim % 4 == 0 && is_aligned(p.y, 16) && is_aligned(p.out, 16) &&
                   (p.shared == nullptr || is_aligned(p.shared, 16));
  const unsigned grid = static_cast<unsigned>(p.n_tokens);
  if (vec) {
    moe_combine_kernel<true><<<grid, kCombineThreads, 0, stream>>>(p);
  } else {
    moe_combine_kernel<false><<<grid, kCombineThreads, 0, stream>>>(p);
  }
  QF_KERNEL_CHECK();
}

}  // namespace qf::kernels
