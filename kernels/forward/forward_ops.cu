// CUDA kernels and launchers of forward_ops.cuh: RMSNorm, trailing interleaved RoPE, amax + BF16
// cast, clamped SwiGLU, mHC pre (mix + Sinkhorn, collapse) and post. Memory-bound over FP32 rows:
// one warp (narrow rows) or one block (wide rows) per row, float4 loads where aligned.
// Every float mul/add is an explicit __fmul_rn/__fadd_rn so nvcc cannot contract it into an FMA:
// the results then round like the CPU references (only expf and the double RMS sum differ).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include "kernels/forward/forward_ops.cuh"
#include "kernels/launch_util.cuh"
#include "numerics/bf16.hpp"

namespace qf::kernels {

using namespace qf::numerics;

namespace {

constexpr int kThreads = 256;
// Rows at least this wide get a whole block, narrower rows one warp (8 rows per block).
constexpr int64_t kBlockRowCols = 2048;
constexpr int kMaxHc = 8;

// Threads for a one-block-per-item kernel with n_items parallel items: 32..kThreads.
int block_threads(int64_t n_items) {
  return static_cast<int>(
      std::min<int64_t>(kThreads, std::max<int64_t>(32, round_up(n_items, 32))));
}

// fn(integral_constant<int, kGroup>, integral_constant<bool, kVec>) for a row kernel.
template <typename Fn>
void dispatch_rows(int64_t n_cols, bool vec, Fn&& fn) {
  using W = std::integral_constant<int, 32>;
  using B = std::integral_constant<int, kThreads>;
  using V = std::true_type;
  using S = std::false_type;
  if (n_cols >= kBlockRowCols) {
    vec ? fn(B{}, V{}) : fn(B{}, S{});
  } else {
    vec ? fn(W{}, V{}) : fn(W{}, S{});
  }
}

// fn(integral_constant<int, kHc>) for hc in [1, kMaxHc].
template <typename Fn>
void dispatch_hc(int64_t hc, Fn&& fn) {
  switch (hc) {
    case 1:
      return fn(std::integral_constant<int, 1>{});
    case 2:
      return fn(std::integral_constant<int, 2>{});
    case 3:
      return fn(std::integral_constant<int, 3>{});
    case 4:
      return fn(std::integral_constant<int, 4>{});
    case 5:
      return fn(std::integral_constant<int, 5>{});
    case 6:
      return fn(std::integral_constant<int, 6>{});
    case 7:
      return fn(std::integral_constant<int, 7>{});
    case 8:
      return fn(std::integral_constant<int, 8>{});
    default:
      QF_FAIL("hc_mult", hc, "not supported by the CUDA mHC kernels (1..", kMaxHc, ")");
  }
}

__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }

// Same as forward_ops_ref.cpp: RNE, every NaN as torch's canonical 0x7FC0.
__device__ __forceinline__ uint32_t to_bf16_canonical(float x) {
  const uint32_t bits = float_to_bits(x);
  return is_nan_bits(bits) ? 0x7FC0u : static_cast<uint32_t>(float_to_bf16(x));
}

__device__ __forceinline__ uint32_t abs_bits(float x) { return float_to_bits(x) & 0x7FFFFFFFu; }

__device__ __forceinline__ uint32_t max4_abs_bits(uint32_t m, float4 v) {
  return max(max(m, max(abs_bits(v.x), abs_bits(v.y))), max(abs_bits(v.z), abs_bits(v.w)));
}

__device__ __forceinline__ uint2 pack_bf16x4(float4 v) {
  return make_uint2(to_bf16_canonical(v.x) | (to_bf16_canonical(v.y) << 16),
                    to_bf16_canonical(v.z) | (to_bf16_canonical(v.w) << 16));
}

struct SumOp {
  __device__ double operator()(double a, double b) const { return a + b; }
};
struct MaxOp {
  __device__ uint32_t operator()(uint32_t a, uint32_t b) const { return max(a, b); }
};

// Reduction over a row group of kGroup threads (a warp, or the whole block); every thread gets
// the result. All threads of the block must call it (the block variant synchronizes).
template <int kGroup, typename T, typename Op>
__device__ T group_reduce(T v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  if constexpr (kGroup == 32) {
    return v;
  } else {
    static_assert(kGroup == kThreads, "row groups are a warp or a block");
    __shared__ T partial[kThreads / 32];
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    T r = partial[0];
#pragma unroll
    for (int w = 1; w < kThreads / 32; ++w) r = op(r, partial[w]);
    __syncthreads();  // partial may be reused by a later call
    return r;
  }
}

// Commits the row maxima of one block: one atomicMax per distinct slot of the block's rows
// (rows of a block may belong to different slots; a negative slot is skipped). All threads call.
template <int kGroup>
__device__ void commit_row_amax(uint32_t m, bool active, int32_t slot, uint32_t* amax_bits) {
  constexpr int kRows = kThreads / kGroup;
  m = group_reduce<kGroup>(m, MaxOp{});
  __shared__ int32_t s_slot[kRows];
  __shared__ uint32_t s_max[kRows];
  const int g = threadIdx.x / kGroup;
  if (threadIdx.x % kGroup == 0) {
    s_slot[g] = active ? slot : -1;
    s_max[g] = m;
  }
  __syncthreads();
  if (threadIdx.x < kRows) {
    const int32_t my_slot = s_slot[threadIdx.x];
    bool first = my_slot >= 0;
    for (int j = 0; j < static_cast<int>(threadIdx.x) && first; ++j) first = s_slot[j] != my_slot;
    if (first) {
      uint32_t best = 0;
      for (int j = threadIdx.x; j < kRows; ++j) {
        if (s_slot[j] == my_slot) best = max(best, s_max[j]);
      }
      if (best != 0) atomicMax(amax_bits + my_slot, best);
    }
  }
}

__device__ __forceinline__ int32_t slot_of(const int32_t* row_slot, int64_t row) {
  return row_slot != nullptr ? row_slot[row] : 0;
}

}  // namespace

// ---- RMSNorm ----------------------------------------------------------------------------------
// Pass 1 sums squares in double (any order: rounded to float before use, as the reference);
// pass 2 writes x * inv_rms [* w]. kCache > 0 (float4 rows of at most kGroup * kCache vectors)
// keeps the row in registers between the passes; otherwise pass 2 re-reads it (L1/L2).
// x may equal out: each element is read and written by the same thread.
template <int kGroup, bool kVec, int kCache>
static __global__ void rms_norm_kernel(const float* x, float* out, const float* weight,
                                       int64_t n_rows, int64_t n_cols, float eps) {
  static_assert(kCache == 0 || kVec, "the register cache holds float4 vectors");
  const int64_t row = blockIdx.x * static_cast<int64_t>(kThreads / kGroup) + threadIdx.x / kGroup;
  const int lane = threadIdx.x % kGroup;
  const bool active = row < n_rows;
  const float* xr = x + (active ? row : 0) * n_cols;
  float* yr = out + (active ? row : 0) * n_cols;
  const int64_t n4 = n_cols / 4;
  const float4* x4 = reinterpret_cast<const float4*>(xr);
  double sum_sq = 0.0;
  float4 cache[kCache > 0 ? kCache : 1];
  if constexpr (kCache > 0) {
#pragma unroll
    for (int c = 0; c < kCache; ++c) {
      const int64_t i = lane + static_cast<int64_t>(c) * kGroup;
      cache[c] = active && i < n4 ? x4[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
#pragma unroll
    for (int c = 0; c < kCache; ++c) {
      const float4 v = cache[c];
      sum_sq += static_cast<double>(v.x) * v.x + static_cast<double>(v.y) * v.y +
                static_cast<double>(v.z) * v.z + static_cast<double>(v.w) * v.w;
    }
  } else if (active) {
    if constexpr (kVec) {
      for (int64_t i = lane; i < n4; i += kGroup) {
        const float4 v = x4[i];
        sum_sq += static_cast<double>(v.x) * v.x + static_cast<double>(v.y) * v.y +
                  static_cast<double>(v.z) * v.z + static_cast<double>(v.w) * v.w;
      }
    } else {
      for (int64_t i = lane; i < n_cols; i += kGroup) sum_sq += static_cast<double>(xr[i]) * xr[i];
    }
  }
  sum_sq = group_reduce<kGroup>(sum_sq, SumOp{});
  if (!active) return;
  const float variance = static_cast<float>(sum_sq / static_cast<double>(n_cols));
  const float inv_rms = __fdiv_rn(1.0f, __fsqrt_rn(add(variance, eps)));
  if constexpr (kVec) {
    const float4* w4 = reinterpret_cast<const float4*>(weight);
    float4* y4 = reinterpret_cast<float4*>(yr);
    auto norm4 = [&](const float4 v, int64_t i) {
      float4 h =
          make_float4(mul(v.x, inv_rms), mul(v.y, inv_rms), mul(v.z, inv_rms), mul(v.w, inv_rms));
      if (weight != nullptr) {
        const float4 w = w4[i];
        h = make_float4(mul(w.x, h.x), mul(w.y, h.y), mul(w.z, h.z), mul(w.w, h.w));
      }
      y4[i] = h;
    };
    if constexpr (kCache > 0) {
#pragma unroll
      for (int c = 0; c < kCache; ++c) {
        const int64_t i = lane + static_cast<int64_t>(c) * kGroup;
        if (i < n4) norm4(cache[c], i);
      }
    } else {
      for (int64_t i = lane; i < n4; i += kGroup) norm4(x4[i], i);
    }
  } else {
    for (int64_t i = lane; i < n_cols; i += kGroup) {
      const float h = mul(xr[i], inv_rms);
      yr[i] = weight != nullptr ? mul(weight[i], h) : h;
    }
  }
}

void launch_rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_rms_norm");
  QF_CHECK(p.n_rows >= 0 && p.n_cols >= 0, "rms_norm shape", p.n_rows, "x", p.n_cols);
  if (p.n_rows == 0 || p.n_cols == 0) return;
  QF_CHECK(p.x != nullptr && p.out != nullptr, "rms_norm needs x and out");
  const bool vec = p.n_cols % 4 == 0 && is_aligned(p.x, 16) && is_aligned(p.out, 16) &&
                   (p.weight == nullptr || is_aligned(p.weight, 16));
  // Register cache: 4 float4 per thread of a block (hidden 4096), 8 per lane of a warp (1024).
  constexpr int kBlockCache = 4, kWarpCache = 8;
  dispatch_rows(p.n_cols, vec, [&](auto group, auto v) {
    constexpr int kGroup = decltype(group)::value;
    constexpr bool kVec = decltype(v)::value;
    constexpr int kCache = kGroup == 32 ? kWarpCache : kBlockCache;
    const unsigned grid = grid_x(ceil_div(p.n_rows, kThreads / kGroup), "rms_norm");
    if (kVec && p.n_cols / 4 <= static_cast<int64_t>(kGroup) * kCache) {
      rms_norm_kernel<kGroup, kVec, kVec ? kCache : 0>
          <<<grid, kThreads, 0, stream>>>(p.x, p.out, p.weight, p.n_rows, p.n_cols, p.eps);
    } else {
      rms_norm_kernel<kGroup, kVec, 0>
          <<<grid, kThreads, 0, stream>>>(p.x, p.out, p.weight, p.n_rows, p.n_cols, p.eps);
    }
  });
  QF_KERNEL_CHECK();
}

// ---- RoPE ---------------------------------------------------------------------------------------
// One block per row: cos/sin of the row's position into shared memory (double cos/sin of the
// FP32 angle, as ops::rope_cos_sin), then every (vector, pair) of the row. kVec2: float2 pairs.
template <bool kVec2>
static __global__ void rope_kernel(float* x, int64_t n_vecs, int64_t dim, int64_t n_pairs,
                                   const float* __restrict__ inv_freq, float attention_scaling,
                                   int64_t period, int64_t position_step, bool inverse) {
  extern __shared__ float cos_sin[];  // [n_pairs] cos, then [n_pairs] sin (negated if inverse)
  const int64_t row = blockIdx.x;
  const float pos = static_cast<float>((row % period) * position_step);
  for (int64_t i = threadIdx.x; i < n_pairs; i += blockDim.x) {
    const float freq = mul(inv_freq[i], pos);
    const float s = mul(static_cast<float>(sin(static_cast<double>(freq))), attention_scaling);
    cos_sin[i] = mul(static_cast<float>(cos(static_cast<double>(freq))), attention_scaling);
    cos_sin[n_pairs + i] = inverse ? -s : s;
  }
  __syncthreads();
  float* xr = x + row * n_vecs * dim + (dim - 2 * n_pairs);
  for (int64_t k = threadIdx.x; k < n_vecs * n_pairs; k += blockDim.x) {
    const int64_t v = k / n_pairs, i = k - v * n_pairs;
    float* pair = xr + v * dim + 2 * i;
    const float c = cos_sin[i], s = cos_sin[n_pairs + i];
    float x0, x1;
    if constexpr (kVec2) {
      const float2 p2 = *reinterpret_cast<const float2*>(pair);
      x0 = p2.x;
      x1 = p2.y;
    } else {
      x0 = pair[0];
      x1 = pair[1];
    }
    const float y0 = add(mul(x0, c), mul(-x1, s));
    const float y1 = add(mul(x1, c), mul(x0, s));
    if constexpr (kVec2) {
      *reinterpret_cast<float2*>(pair) = make_float2(y0, y1);
    } else {
      pair[0] = y0;
      pair[1] = y1;
    }
  }
}

void launch_rope(const RopeParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_rope");
  QF_CHECK(p.n_rows >= 0 && p.n_vecs >= 0 && p.dim >= 0, "rope shape", p.n_rows, "x", p.n_vecs, "x",
           p.dim);
  QF_CHECK(p.rope_dim > 0 && p.rope_dim % 2 == 0 && p.rope_dim <= p.dim, "rope_dim", p.rope_dim,
           "must be even and in (0, dim", p.dim, "]");
  QF_CHECK(p.period > 0 && p.position_step >= 0, "rope period", p.period, "step", p.position_step);
  if (p.n_rows == 0 || p.n_vecs == 0) return;
  QF_CHECK(p.x != nullptr && p.inv_freq != nullptr, "rope needs x and inv_freq");
  const int64_t n_pairs = p.rope_dim / 2;
  const bool vec2 = p.dim % 2 == 0 && is_aligned(p.x, 8);
  const int threads = block_threads(p.n_vecs * n_pairs);
  const size_t smem = 2 * static_cast<size_t>(n_pairs) * sizeof(float);
  QF_CHECK(smem <= 48 * 1024, "rope_dim", p.rope_dim, "too large");
  const unsigned grid = grid_x(p.n_rows, "rope");
  if (vec2) {
    rope_kernel<true><<<grid, threads, smem, stream>>>(p.x, p.n_vecs, p.dim, n_pairs, p.inv_freq,
                                                       p.attention_scaling, p.period,
                                                       p.position_step, p.inverse);
  } else {
    rope_kernel<false><<<grid, threads, smem, stream>>>(p.x, p.n_vecs, p.dim, n_pairs, p.inv_freq,
                                                        p.attention_scaling, p.period,
                                                        p.position_step, p.inverse);
  }
  QF_KERNEL_CHECK();
}

// ---- amax + BF16 cast -----------------------------------------------------------------------
template <int kGroup, bool kVec>
static __global__ void amax_cast_kernel(const float* __restrict__ x, int64_t n_rows, int64_t n_cols,
                                        const int32_t* __restrict__ row_slot, uint32_t* amax_bits,
                                        uint16_t* __restrict__ out_bf16) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(kThreads / kGroup) + threadIdx.x / kGroup;
  const int lane = threadIdx.x % kGroup;
  const bool active = row < n_rows;
  const int32_t slot = active && amax_bits != nullptr ? slot_of(row_slot, row) : -1;
  const bool want_amax = slot >= 0;
  uint32_t m = 0;
  if (active && (want_amax || out_bf16 != nullptr)) {
    const float* xr = x + row * n_cols;
    uint16_t* br = out_bf16 != nullptr ? out_bf16 + row * n_cols : nullptr;
    if constexpr (kVec) {
      const float4* x4 = reinterpret_cast<const float4*>(xr);
      for (int64_t i = lane; i < n_cols / 4; i += kGroup) {
        const float4 v = x4[i];
        m = max4_abs_bits(m, v);
        if (br != nullptr) reinterpret_cast<uint2*>(br)[i] = pack_bf16x4(v);
      }
    } else {
      for (int64_t i = lane; i < n_cols; i += kGroup) {
        const float v = xr[i];
        m = max(m, abs_bits(v));
        if (br != nullptr) br[i] = static_cast<uint16_t>(to_bf16_canonical(v));
      }
    }
  }
  if (amax_bits != nullptr) commit_row_amax<kGroup>(m, want_amax, slot, amax_bits);
}

void launch_amax_cast(const AmaxCastParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_amax_cast");
  QF_CHECK(p.n_rows >= 0 && p.n_cols >= 0, "amax_cast shape", p.n_rows, "x", p.n_cols);
  if (p.n_rows == 0 || p.n_cols == 0 || (p.amax_bits == nullptr && p.out_bf16 == nullptr)) return;
  QF_CHECK(p.x != nullptr, "amax_cast needs x");
  const bool vec = p.n_cols % 4 == 0 && is_aligned(p.x, 16) &&
                   (p.out_bf16 == nullptr || is_aligned(p.out_bf16, 8));
  dispatch_rows(p.n_cols, vec, [&](auto group, auto v) {
    constexpr int kGroup = decltype(group)::value;
    const unsigned grid = grid_x(ceil_div(p.n_rows, kThreads / kGroup), "amax_cast");
    amax_cast_kernel<kGroup, decltype(v)::value><<<grid, kThreads, 0, stream>>>(
        p.x, p.n_rows, p.n_cols, p.row_slot, p.amax_bits, p.out_bf16);
  });
  QF_KERNEL_CHECK();
}

// ---- clamped SwiGLU -------------------------------------------------------------------------
// ops::swiglu_clamped: g = std::min(gate, limit), u = std::min(std::max(up, -limit), limit)
// (the std:: comparisons written out, so a NaN passes through as it does on the CPU),
// h = g / (1 + exp(-g)) * u.
__device__ __forceinline__ float swiglu_one(float gate, float up, float limit) {
  const float g = (limit < gate) ? limit : gate;
  float u = (up < -limit) ? -limit : up;
  u = (limit < u) ? limit : u;
  return mul(__fdiv_rn(g, add(1.0f, expf(-g))), u);
}

template <int kGroup, bool kVec>
static __global__ void swiglu_kernel(const float* __restrict__ gate_up, int64_t n_rows,
                                     int64_t inter, float limit, float* __restrict__ out,
                                     uint16_t* __restrict__ out_bf16,
                                     const int32_t* __restrict__ row_slot, uint32_t* amax_bits) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(kThreads / kGroup) + threadIdx.x / kGroup;
  const int lane = threadIdx.x % kGroup;
  const bool active = row < n_rows;
  const int32_t slot = active && amax_bits != nullptr ? slot_of(row_slot, row) : -1;
  uint32_t m = 0;
  if (active) {
    const float* gr = gate_up + row * 2 * inter;
    const float* ur = gr + inter;
    float* yr = out != nullptr ? out + row * inter : nullptr;
    uint16_t* br = out_bf16 != nullptr ? out_bf16 + row * inter : nullptr;
    if constexpr (kVec) {
      for (int64_t i = lane; i < inter / 4; i += kGroup) {
        const float4 g = reinterpret_cast<const float4*>(gr)[i];
        const float4 u = reinterpret_cast<const float4*>(ur)[i];
        const float4 h = make_float4(swiglu_one(g.x, u.x, limit), swiglu_one(g.y, u.y, limit),
                                     swiglu_one(g.z, u.z, limit), swiglu_one(g.w, u.w, limit));
        m = max4_abs_bits(m, h);
        if (yr != nullptr) reinterpret_cast<float4*>(yr)[i] = h;
        if (br != nullptr) reinterpret_cast<uint2*>(br)[i] = pack_bf16x4(h);
      }
    } else {
      for (int64_t i = lane; i < inter; i += kGroup) {
        const float h = swiglu_one(gr[i], ur[i], limit);
        m = max(m, abs_bits(h));
        if (yr != nullptr) yr[i] = h;
        if (br != nullptr) br[i] = static_cast<uint16_t>(to_bf16_canonical(h));
      }
    }
  }
  if (amax_bits != nullptr) commit_row_amax<kGroup>(m, slot >= 0, slot, amax_bits);
}

void launch_swiglu(const SwigluParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_swiglu");
  QF_CHECK(p.n_rows >= 0 && p.inter >= 0, "swiglu shape", p.n_rows, "x", p.inter);
  if (p.n_rows == 0 || p.inter == 0) return;
  QF_CHECK(p.gate_up != nullptr, "swiglu needs gate_up");
  QF_CHECK(p.out != nullptr || p.out_bf16 != nullptr || p.amax_bits != nullptr,
           "swiglu with no output");
  const bool vec = p.inter % 4 == 0 && is_aligned(p.gate_up, 16) &&
                   (p.out == nullptr || is_aligned(p.out, 16)) &&
                   (p.out_bf16 == nullptr || is_aligned(p.out_bf16, 8));
  dispatch_rows(p.inter, vec, [&](auto group, auto v) {
    constexpr int kGroup = decltype(group)::value;
    const unsigned grid = grid_x(ceil_div(p.n_rows, kThreads / kGroup), "swiglu");
    swiglu_kernel<kGroup, decltype(v)::value><<<grid, kThreads, 0, stream>>>(
        p.gate_up, p.n_rows, p.inter, p.limit, p.out, p.out_bf16, p.row_slot, p.amax_bits);
  });
  QF_KERNEL_CHECK();
}

// ---- mHC pre ------------------------------------------------------------------------------------
// Step 1, one thread per token: pre / post / comb exactly as hc_pre_ref (model::hc_pre and
// ops::sinkhorn_comb, same loop order), in registers. The 4x4 Sinkhorn is a few hundred
// dependent flops per token; 16k tokens are 16k independent threads, so it costs microseconds.
__device__ __forceinline__ float sigmoid(float x) { return __fdiv_rn(1.0f, add(1.0f, expf(-x))); }

template <int kHc>
__device__ __forceinline__ void normalize_columns(float* comb, float eps) {
#pragma unroll
  for (int j = 0; j < kHc; ++j) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < kHc; ++i) s = add(s, comb[i * kHc + j]);
#pragma unroll
    for (int i = 0; i < kHc; ++i) comb[i * kHc + j] = __fdiv_rn(comb[i * kHc + j], add(s, eps));
  }
}

template <int kHc>
__device__ __forceinline__ void normalize_rows(float* comb, float eps) {
#pragma unroll
  for (int i = 0; i < kHc; ++i) {
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < kHc; ++j) s = add(s, comb[i * kHc + j]);
#pragma unroll
    for (int j = 0; j < kHc; ++j) comb[i * kHc + j] = __fdiv_rn(comb[i * kHc + j], add(s, eps));
  }
}

// ops::sinkhorn_comb: softmax + eps, one column normalisation, then iters-1 row/column pairs.
template <int kHc>
__device__ void sinkhorn_comb_dev(const float* logits, int64_t iters, float eps, float* comb) {
#pragma unroll
  for (int i = 0; i < kHc; ++i) {  // softmax over the last axis, + eps
    float m = logits[i * kHc];     // std::max_element: the first maximum under operator<
#pragma unroll
    for (int j = 1; j < kHc; ++j) m = (m < logits[i * kHc + j]) ? logits[i * kHc + j] : m;
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kHc; ++j) {
      comb[i * kHc + j] = expf(__fsub_rn(logits[i * kHc + j], m));
      sum = add(sum, comb[i * kHc + j]);
    }
#pragma unroll
    for (int j = 0; j < kHc; ++j) comb[i * kHc + j] = add(__fdiv_rn(comb[i * kHc + j], sum), eps);
  }
  normalize_columns<kHc>(comb, eps);
  for (int64_t it = 0; it + 1 < iters; ++it) {
    normalize_rows<kHc>(comb, eps);
    normalize_columns<kHc>(comb, eps);
  }
}

template <int kHc>
static __global__ void hc_mix_kernel(const float* __restrict__ mixes,
                                     const float* __restrict__ base,
                                     const float* __restrict__ scale, int64_t n_tokens,
                                     int64_t iters, float hc_eps, float* __restrict__ pre,
                                     float* __restrict__ post, float* __restrict__ comb) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= n_tokens) return;
  const float* m = mixes + t * (2 + kHc) * kHc;
  const float pre_scale = scale[0], post_scale = scale[1], comb_scale = scale[2];
#pragma unroll
  for (int h = 0; h < kHc; ++h) {
    pre[t * kHc + h] = add(sigmoid(add(mul(m[h], pre_scale), base[h])), hc_eps);
    if (post != nullptr) {
      post[t * kHc + h] = mul(2.0f, sigmoid(add(mul(m[kHc + h], post_scale), base[kHc + h])));
    }
  }
  if (comb == nullptr) return;
  float logits[kHc * kHc], c[kHc * kHc];
#pragma unroll
  for (int k = 0; k < kHc * kHc; ++k)
    logits[k] = add(mul(m[2 * kHc + k], comb_scale), base[2 * kHc + k]);
  sinkhorn_comb_dev<kHc>(logits, iters, hc_eps, c);
#pragma unroll
  for (int k = 0; k < kHc * kHc; ++k) comb[t * kHc * kHc + k] = c[k];
}

// Step 2, one block per token: collapsed[t, d] = sum_h pre[t, h] * hidden[t, h, d], h ascending
// from 0.0f as the reference.
template <int kHc, bool kVec>
static __global__ void hc_collapse_kernel(const float* __restrict__ hidden,
                                          const float* __restrict__ pre, int64_t dim,
                                          float* __restrict__ collapsed) {
  const int64_t t = blockIdx.x;
  float p[kHc];
#pragma unroll
  for (int h = 0; h < kHc; ++h) p[h] = pre[t * kHc + h];
  const float* x = hidden + t * kHc * dim;
  float* out = collapsed + t * dim;
  if constexpr (kVec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const int64_t n4 = dim / 4;
    for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
      float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
      for (int h = 0; h < kHc; ++h) {
        const float4 v = x4[h * n4 + i];
        s = make_float4(add(s.x, mul(p[h], v.x)), add(s.y, mul(p[h], v.y)),
                        add(s.z, mul(p[h], v.z)), add(s.w, mul(p[h], v.w)));
      }
      reinterpret_cast<float4*>(out)[i] = s;
    }
  } else {
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
      float s = 0.0f;
#pragma unroll
      for (int h = 0; h < kHc; ++h) s = add(s, mul(p[h], x[h * dim + d]));
      out[d] = s;
    }
  }
}

void launch_hc_pre(const HcPreParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_hc_pre");
  QF_CHECK(p.n_tokens >= 0 && p.dim >= 0 && p.sinkhorn_iters >= 0, "hc_pre shape", p.n_tokens,
           "tokens, dim", p.dim, "iters", p.sinkhorn_iters);
  QF_CHECK(p.hc >= 1 && p.hc <= kMaxHc, "hc_mult", p.hc, "not in [1,", kMaxHc, "]");
  if (p.n_tokens == 0) return;
  QF_CHECK(p.mixes != nullptr && p.base != nullptr && p.scale != nullptr && p.pre != nullptr,
           "hc_pre needs mixes, base, scale and pre");
  QF_CHECK(p.collapsed == nullptr || p.hidden != nullptr, "hc_pre collapsed needs hidden");
  const bool vec = p.dim % 4 == 0 && p.collapsed != nullptr && is_aligned(p.hidden, 16) &&
                   is_aligned(p.collapsed, 16);
  dispatch_hc(p.hc, [&](auto hc) {
    constexpr int kHc = decltype(hc)::value;
    constexpr int kMixThreads = 128;
    hc_mix_kernel<kHc>
        <<<grid_x(ceil_div(p.n_tokens, kMixThreads), "hc_pre"), kMixThreads, 0, stream>>>(
            p.mixes, p.base, p.scale, p.n_tokens, p.sinkhorn_iters, p.hc_eps, p.pre, p.post,
            p.comb);
    QF_KERNEL_CHECK();
    if (p.collapsed == nullptr || p.dim == 0) return;
    const int threads = block_threads(vec ? p.dim / 4 : p.dim);
    if (vec) {
      hc_collapse_kernel<kHc, true><<<grid_x(p.n_tokens, "hc_pre"), threads, 0, stream>>>(
          p.hidden, p.pre, p.dim, p.collapsed);
    } else {
      hc_collapse_kernel<kHc, false><<<grid_x(p.n_tokens, "hc_pre"), threads, 0, stream>>>(
          p.hidden, p.pre, p.dim, p.collapsed);
    }
    QF_KERNEL_CHECK();
  });
}

// ---- mHC post -----------------------------------------------------------------------------------
// One block per token; each thread owns columns d of all hc streams, so the in-place update
// reads the old values before any write: x[k] = post[k] * y + sum_j comb[j][k] * old[j].
template <int kHc, bool kVec>
static __global__ void hc_post_kernel(const float* __restrict__ post,
                                      const float* __restrict__ comb,
                                      const float* __restrict__ block_out, float* hidden,
                                      int64_t dim) {
  const int64_t t = blockIdx.x;
  float pk[kHc], cb[kHc * kHc];
#pragma unroll
  for (int k = 0; k < kHc; ++k) pk[k] = post[t * kHc + k];
#pragma unroll
  for (int k = 0; k < kHc * kHc; ++k) cb[k] = comb[t * kHc * kHc + k];
  float* x = hidden + t * kHc * dim;
  const float* y = block_out + t * dim;
  if constexpr (kVec) {
    float4* x4 = reinterpret_cast<float4*>(x);
    const int64_t n4 = dim / 4;
    for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
      float4 old[kHc];
#pragma unroll
      for (int j = 0; j < kHc; ++j) old[j] = x4[j * n4 + i];
      const float4 yv = reinterpret_cast<const float4*>(y)[i];
#pragma unroll
      for (int k = 0; k < kHc; ++k) {
        float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int j = 0; j < kHc; ++j) {
          const float c = cb[j * kHc + k];
          s = make_float4(add(s.x, mul(c, old[j].x)), add(s.y, mul(c, old[j].y)),
                          add(s.z, mul(c, old[j].z)), add(s.w, mul(c, old[j].w)));
        }
        x4[k * n4 + i] = make_float4(add(mul(pk[k], yv.x), s.x), add(mul(pk[k], yv.y), s.y),
                                     add(mul(pk[k], yv.z), s.z), add(mul(pk[k], yv.w), s.w));
      }
    }
  } else {
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
      float old[kHc];
#pragma unroll
      for (int j = 0; j < kHc; ++j) old[j] = x[j * dim + d];
      const float yv = y[d];
#pragma unroll
      for (int k = 0; k < kHc; ++k) {
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < kHc; ++j) s = add(s, mul(cb[j * kHc + k], old[j]));
        x[k * dim + d] = add(mul(pk[k], yv), s);
      }
    }
  }
}

void launch_hc_post(const HcPostParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_hc_post");
  QF_CHECK(p.n_tokens >= 0 && p.dim >= 0, "hc_post shape", p.n_tokens, "tokens, dim", p.dim);
  QF_CHECK(p.hc >= 1 && p.hc <= kMaxHc, "hc_mult", p.hc, "not in [1,", kMaxHc, "]");
  if (p.n_tokens == 0 || p.dim == 0) return;
  QF_CHECK(p.post != nullptr && p.comb != nullptr && p.block_out != nullptr && p.hidden != nullptr,
           "hc_post needs post, comb, block_out and hidden");
  const bool vec = p.dim % 4 == 0 && is_aligned(p.hidden, 16) && is_aligned(p.block_out, 16);
  const int threads = block_threads(vec ? p.dim / 4 : p.dim);
  dispatch_hc(p.hc, [&](auto hc) {
    constexpr int kHc = decltype(hc)::value;
    if (vec) {
      hc_post_kernel<kHc, true><<<grid_x(p.n_tokens, "hc_post"), threads, 0, stream>>>(
          p.post, p.comb, p.block_out, p.hidden, p.dim);
    } else {
      hc_post_kernel<kHc, false><<<grid_x(p.n_tokens, "hc_post"), threads, 0, stream>>>(
          p.post, p.comb, p.block_out, p.hidden, p.dim);
    }
  });
  QF_KERNEL_CHECK();
}

}  // namespace qf::kernels
