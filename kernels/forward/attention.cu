// CUDA kernels of kernels/forward/attention.cuh: sink attention (flash-style online softmax over
// 32-key chunks, FP32 SIMT), compressor pooling + RMSNorm + RoPE, HCA causal visibility and the
// Lightning Indexer (score tiles + per-row radix top-k). Does not own: the CPU references
// (attention_ref.cpp) or the projections around these ops.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/forward/attention.cuh"
#include "kernels/launch_util.cuh"

namespace qf::kernels {
namespace {

// ---- cp.async helpers (16-byte copies; src_bytes 0 zero-fills) ---------------------------------
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float dot4(float acc, const float4& a, const float4& b) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  return fmaf(a.w, b.w, acc);
}

// ---- sink attention -----------------------------------------------------------------------------
// A block owns 32 rows = (query, head) pairs: tile_queries consecutive queries of one sequence x
// tile_heads heads (V4-Flash: 1 query x 32 heads), so every K=V row staged in shared memory serves
// all 32 rows. Keys come in chunks of 32: first the window [t0 - window + 1, t_last], then the
// compressed entries that some query of the tile sees (gathered through a list). Per chunk:
// S = Q K^T (each warp one quarter of the head dim for 8 rows, 4x2 register tiles), online
// softmax (running max from the sink logit, running sum), O = O * alpha + P V with O in registers
// (a warp pair owns 4 rows, each warp half of the columns; both run the 4 rows' softmax, which
// saves a barrier). 16 warps: shared memory allows one block per SM, so the warps hide latency.
// cp.async double-buffers the chunks.
constexpr int kThreads = 256;  // indexer kernels
constexpr int kSinkThreads = 512;
constexpr int kRows = 32;
constexpr int kChunk = 32;
constexpr int kPartLd = 36;  // padded row of the partial-logit tiles
constexpr int kPLd = 36;     // padded row of a warp's P tile (float4 reads)

struct SinkGeom {
  const float* q;
  const float* kv;
  const float* sinks;
  const float* comp;
  const uint8_t* vis;
  float* out;
  int S, H, D, W, E;
  int tile_heads, tile_queries, tiles_per_seq;
  float scale;
};

size_t sink_smem_bytes(int D, int E) {
  const size_t ld = D + 4;
  return (kRows * ld + 2 * kChunk * ld + 4 * kRows * kPartLd + (kSinkThreads / 32) * 4 * kPLd) *
             sizeof(float) +
         static_cast<size_t>(E) * sizeof(int);
}

template <int NCH>  // ceil(ceil(D / 128) / 2): float4 column groups of O per lane
__global__ void __launch_bounds__(kSinkThreads, 1) sink_attention_kernel(SinkGeom g) {
  extern __shared__ float4 smem4[];
  const int ld = g.D + 4, D4 = g.D / 4;
  float* q_s = reinterpret_cast<float*>(smem4);                              // [kRows][ld]
  float* k_s = q_s + kRows * ld;                                             // [2][kChunk][ld]
  float* part = k_s + 2 * kChunk * ld;                                       // [4][kRows][kPartLd]
  float* p_s = part + 4 * kRows * kPartLd;                                   // [warps][4][kPLd]
  int* list = reinterpret_cast<int*>(p_s + (kSinkThreads / 32) * 4 * kPLd);  // [E] entries
  __shared__ int s_n_list;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int b = blockIdx.x / g.tiles_per_seq;
  const int t0 = (blockIdx.x % g.tiles_per_seq) * g.tile_queries;
  const int h0 = blockIdx.y * g.tile_heads;
  const int t_last = min(t0 + g.tile_queries, g.S) - 1;
  const int u0 = max(0, t0 - g.W + 1);
  const int n_win = g.W > 0 ? (t_last - u0 + kChunk) / kChunk : 0;
  const int64_t tok0 = static_cast<int64_t>(b) * g.S;

  // Entries seen by any query of the tile, in index order (warp 0, ballot compaction).
  if (warp == 0) {
    int n = 0;
    for (int base = 0; base < g.E; base += 32) {
      const int e = base + lane;
      bool any = false;
      if (e < g.E) {
        for (int t = t0; t <= t_last; ++t) any |= g.vis[(tok0 + t) * g.E + e] != 0;
      }
      const unsigned ballot = __ballot_sync(0xffffffffu, any);
      if (any) list[n + __popc(ballot & ((1u << lane) - 1u))] = e;
      n += __popc(ballot);
    }
    if (lane == 0) s_n_list = n;
  }
  __syncthreads();
  const int n_list = s_n_list;
  const int n_chunks = n_win + (n_list + kChunk - 1) / kChunk;

  // Row r of the tile: query t0 + r / tile_heads, head h0 + r % tile_heads.
  auto row_query = [&](int r) { return t0 + r / g.tile_heads; };
  auto row_head = [&](int r) { return h0 + r % g.tile_heads; };
  auto row_valid = [&](int r) {
    return r < g.tile_queries * g.tile_heads && row_query(r) <= t_last && row_head(r) < g.H;
  };

  for (int idx = tid; idx < kRows * D4; idx += kSinkThreads) {
    const int r = idx / D4, c4 = idx % D4;
    const bool ok = row_valid(r);
    const float* src = ok ? g.q + ((tok0 + row_query(r)) * g.H + row_head(r)) * g.D + 4 * c4 : g.q;
    cp_async16(q_s + r * ld + 4 * c4, src, ok);
  }
  auto load_chunk = [&](int c, float* dst) {
    for (int idx = tid; idx < kChunk * D4; idx += kSinkThreads) {
      const int k = idx / D4, c4 = idx % D4;
      const float* src = g.kv;
      bool ok;
      if (c < n_win) {
        const int j = u0 + c * kChunk + k;
        ok = j <= t_last;
        if (ok) src = g.kv + (tok0 + j) * g.D + 4 * c4;
      } else {
        const int li = (c - n_win) * kChunk + k;
        ok = li < n_list;
        if (ok) src = g.comp + (static_cast<int64_t>(b) * g.E + list[li]) * g.D + 4 * c4;
      }
      cp_async16(dst + k * ld + 4 * c4, src, ok);
    }
  };
  if (n_chunks > 0) load_chunk(0, k_s);
  cp_async_commit();

  // Softmax state of the 4 rows this warp pair owns (rows 4*pair + i), replicated across lanes.
  const int pair = warp >> 1, half = warp & 1;
  float m[4], l[4];
  int rq[4], rh[4];
  bool rv[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = 4 * pair + i;
    rv[i] = row_valid(r);
    rq[i] = row_query(r);
    rh[i] = row_head(r);
    m[i] = rv[i] ? g.sinks[rh[i]] : 0.0f;
    l[i] = 1.0f;  // exp(sink - m) with m = sink
  }
  float4 o[4][NCH];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int cc = 0; cc < NCH; ++cc) o[i][cc] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
  float* p_w = p_s + warp * 4 * kPLd;

  // S tile of a lane: rows rb*8 + rg + 2i (i < 4), keys kg + 16j (j < 2), float4 columns f with
  // f % 4 == slice.
  const int slice = warp & 3, rb = warp >> 2, rg = lane >> 4, kg = lane & 15;
  for (int c = 0; c < n_chunks; ++c) {
    if (c + 1 < n_chunks) load_chunk(c + 1, k_s + ((c + 1) & 1) * kChunk * ld);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const float* kc = k_s + (c & 1) * kChunk * ld;

    // S: partial dot products over this warp's quarter of the float4 columns.
    {
      float acc[4][2];
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[i][0] = acc[i][1] = 0.0f;
      const float* qrow = q_s + (rb * 8 + rg) * ld;
      const float* krow = kc + kg * ld;
#pragma unroll 4
      for (int f = slice; f < D4; f += 4) {
        float4 qv[4], kv[2];
#pragma unroll
        for (int i = 0; i < 4; ++i)
          qv[i] = *reinterpret_cast<const float4*>(qrow + 2 * i * ld + 4 * f);
#pragma unroll
        for (int j = 0; j < 2; ++j)
          kv[j] = *reinterpret_cast<const float4*>(krow + 16 * j * ld + 4 * f);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
          for (int j = 0; j < 2; ++j) acc[i][j] = dot4(acc[i][j], qv[i], kv[j]);
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          part[(slice * kRows + rb * 8 + rg + 2 * i) * kPartLd + kg + 16 * j] = acc[i][j];
        }
      }
    }
    __syncthreads();

    // Online softmax; lane = key of the chunk.
    float alpha[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = 4 * pair + i;
      const float dot =
          (part[r * kPartLd + lane] + part[(kRows + r) * kPartLd + lane]) +
          (part[(2 * kRows + r) * kPartLd + lane] + part[(3 * kRows + r) * kPartLd + lane]);
      bool ok = rv[i];
      if (c < n_win) {
        const int j = u0 + c * kChunk + lane;
        ok = ok && j <= rq[i] && j > rq[i] - g.W;
      } else {
        const int li = (c - n_win) * kChunk + lane;
        ok = ok && li < n_list && g.vis[(tok0 + rq[i]) * g.E + list[li]] != 0;
      }
      const float logit = ok ? dot * g.scale : -INFINITY;
      const float m_new = fmaxf(m[i], warp_max(logit));
      alpha[i] = m_new == m[i] ? 1.0f : expf(m[i] - m_new);
      const float p = ok ? expf(logit - m_new) : 0.0f;
      l[i] = l[i] * alpha[i] + warp_sum(p);
      m[i] = m_new;
      p_w[i * kPLd + lane] = p;  // this warp's copy of P (its pair partner writes its own)
    }
    __syncwarp();

    // O = O * alpha + P V (V = the same K rows).
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int cc = 0; cc < NCH; ++cc) {
        o[i][cc].x *= alpha[i];
        o[i][cc].y *= alpha[i];
        o[i][cc].z *= alpha[i];
        o[i][cc].w *= alpha[i];
      }
    }
    for (int k = 0; k < kChunk; k += 4) {
      float4 p4[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        p4[i] = *reinterpret_cast<const float4*>(p_w + i * kPLd + k);
      }
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const float* vrow = kc + (k + kk) * ld;
#pragma unroll
        for (int cc = 0; cc < NCH; ++cc) {
          const int col = 4 * lane + 128 * (half + 2 * cc);
          if (col < g.D) {
            const float4 v = *reinterpret_cast<const float4*>(vrow + col);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const float p = kk == 0 ? p4[i].x : kk == 1 ? p4[i].y : kk == 2 ? p4[i].z : p4[i].w;
              o[i][cc].x = fmaf(p, v.x, o[i][cc].x);
              o[i][cc].y = fmaf(p, v.y, o[i][cc].y);
              o[i][cc].z = fmaf(p, v.z, o[i][cc].z);
              o[i][cc].w = fmaf(p, v.w, o[i][cc].w);
            }
          }
        }
      }
    }
    __syncthreads();  // chunk buffer and part are rewritten next iteration
  }
  cp_async_wait<0>();

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (!rv[i]) continue;
    const float inv = 1.0f / l[i];
    float* dst = g.out + ((tok0 + rq[i]) * g.H + rh[i]) * g.D;
#pragma unroll
    for (int cc = 0; cc < NCH; ++cc) {
      const int col = 4 * lane + 128 * (half + 2 * cc);
      if (col < g.D) {
        *reinterpret_cast<float4*>(dst + col) =
            make_float4(o[i][cc].x * inv, o[i][cc].y * inv, o[i][cc].z * inv, o[i][cc].w * inv);
      }
    }
  }
}

// ---- compressor pooling + RMSNorm + RoPE -------------------------------------------------------
// One block per (sequence, entry); a thread per channel runs the reference's three passes over
// the slots (max, denominator, weighted sum) in the same order.
constexpr int kPoolThreads = 256;

__global__ void __launch_bounds__(kPoolThreads)
    compress_pool_kernel(CompressPoolParams p, int n_win) {
  extern __shared__ float pooled[];  // [head_dim]
  __shared__ double warp_sq[kPoolThreads / 32];
  __shared__ float s_inv_rms;
  const int hd = static_cast<int>(p.head_dim), rate = static_cast<int>(p.rate);
  const int width = p.overlapping ? 2 * hd : hd;
  const int n_slots = p.overlapping ? 2 * rate : rate;
  const int b = blockIdx.x / n_win, win = blockIdx.x % n_win;
  const int64_t row0 = static_cast<int64_t>(b) * p.seq_len + static_cast<int64_t>(win) * rate;

  double sq = 0.0;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    // slot s -> (kv value, logit); CSA: s < rate is Ca of the previous window (empty in window 0).
    auto slot = [&](int s, float* kv_out) -> float {
      if (!p.overlapping) {
        const int64_t at = (row0 + s) * width + d;
        *kv_out = p.kv[at];
        return p.gate[at] + p.ape[static_cast<int64_t>(s) * width + d];
      }
      if (s < rate) {
        if (win == 0) {
          *kv_out = 0.0f;
          return -INFINITY;
        }
        const int64_t at = (row0 - rate + s) * width + d;
        *kv_out = p.kv[at];
        return p.gate[at] + p.ape[static_cast<int64_t>(s) * width + d];
      }
      const int j = s - rate;
      const int64_t at = (row0 + j) * width + hd + d;
      *kv_out = p.kv[at];
      return p.gate[at] + p.ape[static_cast<int64_t>(j) * width + hd + d];
    };
    float v = 0.0f, m = -INFINITY;
    for (int s = 0; s < n_slots; ++s) m = fmaxf(m, slot(s, &v));
    float denom = 0.0f;
    for (int s = 0; s < n_slots; ++s) denom = __fadd_rn(denom, expf(slot(s, &v) - m));
    float acc = 0.0f;
    for (int s = 0; s < n_slots; ++s) {
      const float w = expf(slot(s, &v) - m) / denom;
      acc = __fadd_rn(acc, __fmul_rn(v, w));
    }
    pooled[d] = acc;
    sq += static_cast<double>(acc) * acc;
  }
  for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
  if ((threadIdx.x & 31) == 0) warp_sq[threadIdx.x >> 5] = sq;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += warp_sq[w];
    const float variance = static_cast<float>(total / static_cast<double>(hd));
    s_inv_rms = 1.0f / sqrtf(variance + p.eps);
  }
  __syncthreads();
  const float inv_rms = s_inv_rms;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    pooled[d] = __fmul_rn(p.norm[d], __fmul_rn(pooled[d], inv_rms));
  }
  __syncthreads();
  float* out = p.out + (static_cast<int64_t>(b) * n_win + win) * hd;
  const int rd = static_cast<int>(p.rope_dim), base = hd - rd;
  for (int d = threadIdx.x; d < base; d += blockDim.x) out[d] = pooled[d];
  // RoPE at position win * rate, interleaved pairs of the trailing rope_dim channels.
  const float pos = static_cast<float>(static_cast<int64_t>(win) * rate);
  for (int i = threadIdx.x; i < rd / 2; i += blockDim.x) {
    const float freq = p.inv_freq[i] * pos;
    const float cs = static_cast<float>(cos(static_cast<double>(freq))) * p.attention_scaling;
    const float sn = static_cast<float>(sin(static_cast<double>(freq))) * p.attention_scaling;
    const float x0 = pooled[base + 2 * i], x1 = pooled[base + 2 * i + 1];
    out[base + 2 * i] = __fadd_rn(__fmul_rn(x0, cs), __fmul_rn(-x1, sn));
    out[base + 2 * i + 1] = __fadd_rn(__fmul_rn(x1, cs), __fmul_rn(x0, sn));
  }
}

// ---- HCA visibility -----------------------------------------------------------------------------
__global__ void causal_visibility_kernel(CausalVisibilityParams p) {
  const int64_t n = p.n_seqs * p.seq_len * p.n_entries;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t e = i % p.n_entries, t = (i / p.n_entries) % p.seq_len;
    p.visible[i] = e < (t + 1) / p.rate ? 1 : 0;
  }
}

// ---- Lightning Indexer: scores ------------------------------------------------------------------
// A block computes score[t][e] for 64 queries x 64 entries of one sequence, keys resident in
// shared memory, the per-head q tiles double-buffered; the head sum runs in head order with the
// reference's roundings ((relu(dot) * scale) * w, then +=), so only the dot products differ.
constexpr int kIxTile = 64;

struct IndexerGeom {
  const float* q;
  const float* weights;
  const float* keys;
  float* scores;  // [n_seqs * S, E]
  int S, E, H, D, rate;
  float scale;
};

__global__ void __launch_bounds__(kThreads) indexer_scores_kernel(IndexerGeom g) {
  extern __shared__ float4 smem4[];
  const int ld = g.D + 4, D4 = g.D / 4;
  float* k_s = reinterpret_cast<float*>(smem4);  // [64][ld]
  float* q_s = k_s + kIxTile * ld;               // [2][64][ld]
  const int e0 = blockIdx.x * kIxTile, t0 = blockIdx.y * kIxTile, b = blockIdx.z;
  const int t_max = min(t0 + kIxTile, g.S) - 1;
  if (e0 >= min(g.E, (t_max + 1) / g.rate)) return;  // no causal pair in the tile
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t tok0 = static_cast<int64_t>(b) * g.S;

  for (int idx = tid; idx < kIxTile * D4; idx += kThreads) {
    const int r = idx / D4, c4 = idx % D4;
    const bool ok = e0 + r < g.E;
    const float* src =
        ok ? g.keys + (static_cast<int64_t>(b) * g.E + e0 + r) * g.D + 4 * c4 : g.keys;
    cp_async16(k_s + r * ld + 4 * c4, src, ok);
  }
  auto load_q = [&](int h, float* dst) {
    for (int idx = tid; idx < kIxTile * D4; idx += kThreads) {
      const int r = idx / D4, c4 = idx % D4;
      const bool ok = t0 + r < g.S;
      const float* src = ok ? g.q + ((tok0 + t0 + r) * g.H + h) * g.D + 4 * c4 : g.q;
      cp_async16(dst + r * ld + 4 * c4, src, ok);
    }
  };
  load_q(0, q_s);
  cp_async_commit();

  // Thread tile: queries tb*16 + rg + 4i, entries eb*32 + kg + 8j.
  const int tb = warp & 3, eb = warp >> 2, rg = lane >> 3, kg = lane & 7;
  float score[4][4];
  int tq[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    tq[i] = t0 + tb * 16 + rg + 4 * i;
#pragma unroll
    for (int j = 0; j < 4; ++j) score[i][j] = 0.0f;
  }
  for (int h = 0; h < g.H; ++h) {
    if (h + 1 < g.H) load_q(h + 1, q_s + ((h + 1) & 1) * kIxTile * ld);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const float* qrow = q_s + (h & 1) * kIxTile * ld + (tb * 16 + rg) * ld;
    const float* krow = k_s + (eb * 32 + kg) * ld;
    float dot[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) dot[i][j] = 0.0f;
    }
#pragma unroll 4
    for (int f = 0; f < D4; ++f) {
      float4 qv[4], kv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        qv[i] = *reinterpret_cast<const float4*>(qrow + 4 * i * ld + 4 * f);
#pragma unroll
      for (int j = 0; j < 4; ++j)
        kv[j] = *reinterpret_cast<const float4*>(krow + 8 * j * ld + 4 * f);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) dot[i][j] = dot4(dot[i][j], qv[i], kv[j]);
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float w = tq[i] < g.S ? __ldg(g.weights + (tok0 + tq[i]) * g.H + h) : 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        score[i][j] =
            __fadd_rn(score[i][j], __fmul_rn(__fmul_rn(fmaxf(dot[i][j], 0.0f), g.scale), w));
      }
    }
    __syncthreads();  // the q buffer of head h is refilled at h + 1
  }
  cp_async_wait<0>();
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (tq[i] >= g.S) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int e = e0 + eb * 32 + kg + 8 * j;
      if (e < g.E) g.scores[(tok0 + tq[i]) * g.E + e] = score[i][j];
    }
  }
}

// ---- Lightning Indexer: per-row top-k -----------------------------------------------------------
// One block per query row: 4 radix passes of 8 bits find the k-th largest score T; every score
// > T is taken, and of the scores == T the lowest entry indices (the reference's tie order).
__device__ __forceinline__ uint32_t ordered_key(float f) {
  if (f == 0.0f) f = 0.0f;  // -0 ties with +0 in the reference's float comparison
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__global__ void __launch_bounds__(kThreads)
    indexer_topk_kernel(const float* scores, uint8_t* visible, int S, int E, int rate, int top_k) {
  extern __shared__ uint32_t keys[];  // [E]
  __shared__ int hist[256];
  __shared__ int warp_count[kThreads / 32];
  __shared__ uint32_t s_prefix;
  __shared__ int s_kleft;
  const int64_t row = blockIdx.x;
  const int t = static_cast<int>(row % S), tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int n = min(E, (t + 1) / rate);
  uint8_t* out = visible + row * E;
  if (n <= top_k || top_k <= 0) {
    const int n_keep = top_k <= 0 ? 0 : n;
    for (int e = tid; e < E; e += kThreads) out[e] = e < n_keep ? 1 : 0;
    return;
  }
  for (int e = tid; e < n; e += kThreads) keys[e] = ordered_key(scores[row * E + e]);
  uint32_t prefix = 0, mask = 0;
  int kleft = top_k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    hist[tid] = 0;  // kThreads == 256 bins
    __syncthreads();
    for (int e = tid; e < n; e += kThreads) {
      const uint32_t k = keys[e];
      if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 255u], 1);
    }
    __syncthreads();
    if (warp == 0) {
      // Lane l scans bins 255 - 8l .. 255 - 8l - 7 (descending digits).
      int c[8], sum = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) sum += (c[j] = hist[255 - (lane * 8 + j)]);
      int incl = sum;
      for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
      }
      int excl = incl - sum;
      if (excl < kleft && kleft <= incl) {
        for (int j = 0; j < 8; ++j) {
          if (excl + c[j] >= kleft) {
            s_prefix = prefix | (static_cast<uint32_t>(255 - (lane * 8 + j)) << shift);
            s_kleft = kleft - excl;
            break;
          }
          excl += c[j];
        }
      }
    }
    __syncthreads();
    prefix = s_prefix;
    kleft = s_kleft;
    mask |= 255u << shift;
  }
  // prefix = the k-th largest key; take kleft of the keys equal to it, lowest index first.
  const int seg = (n + kThreads - 1) / kThreads;
  const int lo = min(n, tid * seg), hi = min(n, lo + seg);
  int n_eq = 0;
  for (int e = lo; e < hi; ++e) n_eq += keys[e] == prefix;
  int incl = n_eq;
  for (int o = 1; o < 32; o <<= 1) {
    const int v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  if (lane == 31) warp_count[warp] = incl;
  __syncthreads();
  int rank = incl - n_eq;
  for (int w = 0; w < warp; ++w) rank += warp_count[w];
  for (int e = lo; e < hi; ++e) {
    const uint32_t k = keys[e];
    uint8_t take = k > prefix;
    if (k == prefix) take = rank++ < kleft;
    out[e] = take;
  }
  for (int e = n + tid; e < E; e += kThreads) out[e] = 0;
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------------------
void launch_sink_attention(const SinkAttentionParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_sink_attention");
  QF_CHECK(p.n_seqs >= 0 && p.seq_len >= 0 && p.n_heads > 0 && p.window >= 0 && p.n_entries >= 0,
           "sink attention: bad shape");
  QF_CHECK(p.head_dim > 0 && p.head_dim <= 512, "sink attention: head_dim", p.head_dim,
           "must be in (0, 512]");
  QF_CHECK_MULTIPLE_OF(p.head_dim, 4, "sink attention");
  QF_CHECK(p.n_entries == 0 || (p.compressed != nullptr && p.visible != nullptr),
           "sink attention: entries without compressed / visible");
  QF_CHECK_ALIGNED(p.q, 16, "sink attention");
  QF_CHECK_ALIGNED(p.kv, 16, "sink attention");
  QF_CHECK_ALIGNED(p.out, 16, "sink attention");
  if (p.n_entries > 0) QF_CHECK_ALIGNED(p.compressed, 16, "sink attention");
  QF_CHECK(p.n_seqs * p.seq_len * p.n_heads * p.head_dim < (int64_t{1} << 40) &&
               p.seq_len < (1 << 30) && p.n_entries < (1 << 30),
           "sink attention: sizes out of range");
  if (p.n_seqs == 0 || p.seq_len == 0) return;
  SinkGeom g{};
  g.q = p.q;
  g.kv = p.kv;
  g.sinks = p.sinks;
  g.comp = p.compressed;
  g.vis = p.visible;
  g.out = p.out;
  g.S = static_cast<int>(p.seq_len);
  g.H = static_cast<int>(p.n_heads);
  g.D = static_cast<int>(p.head_dim);
  g.W = static_cast<int>(std::min<int64_t>(p.window, p.seq_len + 1));
  g.E = static_cast<int>(p.n_entries);
  const int64_t n_groups = ceil_div(p.n_heads, kRows);
  g.tile_heads = static_cast<int>(ceil_div(p.n_heads, n_groups));
  g.tile_queries = kRows / g.tile_heads;
  g.tiles_per_seq = static_cast<int>(ceil_div(p.seq_len, g.tile_queries));
  g.scale = p.scale;
  const size_t smem = sink_smem_bytes(g.D, g.E);
  QF_CHECK(smem <= static_cast<size_t>(device_max_dynamic_smem()), "sink attention: head_dim", g.D,
           "with", g.E, "entries needs", smem, "bytes of shared memory");
  QF_CHECK(p.n_seqs * g.tiles_per_seq < (int64_t{1} << 31) && n_groups < 65536,
           "sink attention: grid too large");
  const dim3 grid(static_cast<unsigned>(p.n_seqs * g.tiles_per_seq),
                  static_cast<unsigned>(n_groups));
  auto launch = [&](auto kernel) {
    QF_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)),
                  "sink attention smem");
    kernel<<<grid, kSinkThreads, smem, stream>>>(g);
  };
  if (g.D <= 256) {
    launch(sink_attention_kernel<1>);
  } else {
    launch(sink_attention_kernel<2>);
  }
  QF_KERNEL_CHECK();
}

void launch_compress_pool(const CompressPoolParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_compress_pool");
  QF_CHECK(p.n_seqs >= 0 && p.seq_len >= 0 && p.rate > 0 && p.head_dim > 0,
           "compress pool: bad shape");
  QF_CHECK(p.rope_dim >= 0 && p.rope_dim % 2 == 0 && p.rope_dim <= p.head_dim &&
               (p.rope_dim == 0 || p.inv_freq != nullptr),
           "compress pool: rope_dim", p.rope_dim, "must be even and <= head_dim");
  QF_CHECK(p.head_dim * 4 <= 48 * 1024 && p.rate < (1 << 20), "compress pool: head_dim", p.head_dim,
           "too large");
  const int64_t n_win = p.seq_len / p.rate;
  if (p.n_seqs == 0 || n_win == 0) return;
  QF_CHECK(p.n_seqs * n_win < (int64_t{1} << 31), "compress pool: grid too large");
  const unsigned grid = static_cast<unsigned>(p.n_seqs * n_win);
  compress_pool_kernel<<<grid, kPoolThreads, p.head_dim * sizeof(float), stream>>>(
      p, static_cast<int>(n_win));
  QF_KERNEL_CHECK();
}

void launch_causal_visibility(const CausalVisibilityParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_causal_visibility");
  QF_CHECK(p.n_seqs >= 0 && p.seq_len >= 0 && p.n_entries >= 0 && p.rate > 0,
           "causal visibility: bad shape");
  const int64_t n = p.n_seqs * p.seq_len * p.n_entries;
  if (n == 0) return;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(ceil_div(n, 256), 4096));
  causal_visibility_kernel<<<grid, 256, 0, stream>>>(p);
  QF_KERNEL_CHECK();
}

void launch_indexer_select(const IndexerSelectParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_indexer_select");
  QF_CHECK(p.n_seqs >= 0 && p.seq_len >= 0 && p.n_entries >= 0 && p.n_heads > 0 && p.rate > 0 &&
               p.top_k >= 0,
           "indexer select: bad shape");
  QF_CHECK(p.head_dim > 0 && p.head_dim <= 256, "indexer select: head_dim", p.head_dim,
           "must be in (0, 256]");
  QF_CHECK_MULTIPLE_OF(p.head_dim, 4, "indexer select");
  QF_CHECK_ALIGNED(p.q, 16, "indexer select");
  QF_CHECK_ALIGNED(p.keys, 16, "indexer select");
  QF_CHECK(p.seq_len < (1 << 30) && p.n_entries < (1 << 30) && p.n_heads < (1 << 20),
           "indexer select: sizes out of range");
  if (p.n_seqs == 0 || p.seq_len == 0 || p.n_entries == 0) return;
  QF_CHECK(p.workspace != nullptr, "indexer select: no workspace");
  IndexerGeom g{};
  g.q = p.q;
  g.weights = p.weights;
  g.keys = p.keys;
  g.scores = static_cast<float*>(p.workspace);
  g.S = static_cast<int>(p.seq_len);
  g.E = static_cast<int>(p.n_entries);
  g.H = static_cast<int>(p.n_heads);
  g.D = static_cast<int>(p.head_dim);
  g.rate = static_cast<int>(p.rate);
  g.scale = static_cast<float>(std::pow(static_cast<double>(p.head_dim), -0.5));  // as the ref
  const size_t smem = 3 * kIxTile * (g.D + 4) * sizeof(float);
  QF_CUDA_CHECK(
      cudaFuncSetAttribute(indexer_scores_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(smem)),
      "indexer scores smem");
  QF_CHECK(p.n_seqs < 65536 && ceil_div(p.seq_len, kIxTile) < 65536,
           "indexer select: grid too large");
  const dim3 grid(static_cast<unsigned>(ceil_div(p.n_entries, kIxTile)),
                  static_cast<unsigned>(ceil_div(p.seq_len, kIxTile)),
                  static_cast<unsigned>(p.n_seqs));
  indexer_scores_kernel<<<grid, kThreads, smem, stream>>>(g);
  QF_KERNEL_CHECK();

  const size_t topk_smem = static_cast<size_t>(p.n_entries) * sizeof(uint32_t);
  QF_CHECK(topk_smem <= static_cast<size_t>(device_max_dynamic_smem()),
           "indexer select:", p.n_entries, "entries do not fit in shared memory");
  QF_CUDA_CHECK(
      cudaFuncSetAttribute(indexer_topk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(topk_smem)),
      "indexer topk smem");
  const int top_k = static_cast<int>(std::min<int64_t>(p.top_k, p.n_entries));
  indexer_topk_kernel<<<static_cast<unsigned>(p.n_seqs * p.seq_len), kThreads, topk_smem, stream>>>(
      g.scores, p.visible, g.S, g.E, g.rate, top_k);
  QF_KERNEL_CHECK();
}

}  // namespace qf::kernels
