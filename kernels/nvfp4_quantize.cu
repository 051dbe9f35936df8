// CUDA kernels and launchers of the NVFP4 family (declared in nvfp4_quantize.cuh). One thread per
// 16-element NVFP4 block or 32-element MXFP4 block (grid-stride for quantize and cast), 16-byte
// loads; the scalar math is the same numerics/ header code as the CPU references, so results are
// bit-identical to them. Does not own that math.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/launch_util.cuh"
#include "kernels/nvfp4_quantize.cuh"

namespace qf::kernels {

using namespace qf::numerics;

namespace {

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xFFFFFFFFu;
static_assert(sizeof(unsigned long long) == sizeof(uint64_t), "counter type");

// Grid size for n_items threads of kThreads each, checked against the 2^31 - 1 CTA limit.
unsigned grid_for(int64_t n_items) {
  const int64_t n_ctas = std::max<int64_t>(1, ceil_div(n_items, kThreads));
  QF_CHECK(n_ctas <= 0x7FFFFFFF, "tensor too large for one launch:", n_items, "threads");
  return static_cast<unsigned>(n_ctas);
}
unsigned long long* as_ull(uint64_t* p) { return reinterpret_cast<unsigned long long*>(p); }

// Grid for the grid-stride kernels: every CTA resident at once (occupancy x SMs), fewer for
// small tensors.
template <typename Kernel>
unsigned resident_grid(Kernel kernel, int64_t n_items) {
  const int n_sms = device_sm_count();
  int per_sm = 0;
  QF_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0),
                "resident grid");
  return static_cast<unsigned>(std::max<int64_t>(
      1, std::min<int64_t>(ceil_div(n_items, kThreads), int64_t{n_sms} * std::max(per_sm, 1))));
}

// Grid for grid-stride reductions: enough CTAs to fill the device, no more.
unsigned reduction_grid(int64_t n_items) {
  return static_cast<unsigned>(std::max<int64_t>(
      1, std::min<int64_t>(ceil_div(n_items, kThreads), 8LL * device_sm_count())));
}

// Block-wide sums of each n[i]; thread 0 adds the non-zero totals into counters[i], so one
// atomic per CTA and counter (the grids below are a few CTAs per SM). Every thread calls it.
template <int kN>
__device__ __forceinline__ void block_add(const uint32_t (&n)[kN],
                                          unsigned long long* __restrict__ counters) {
  __shared__ uint32_t s_sum[kN][kThreads / 32];
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const uint32_t total = __reduce_add_sync(kFullMask, n[i]);
    if ((threadIdx.x & 31) == 0) s_sum[i][warp] = total;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
#pragma unroll
    for (int i = 0; i < kN; ++i) {
      unsigned long long total = 0;
      for (int w = 0; w < kThreads / 32; ++w) total += s_sum[i][w];
      if (total != 0) atomicAdd(counters + i, total);
    }
  }
}

// Block-wide max of m into *out_max and sum of n into *out_sum (either may be null).
__device__ __forceinline__ void block_max_add(uint32_t m, uint32_t n, uint32_t* out_max,
                                              unsigned long long* out_sum) {
  __shared__ uint32_t s_max[kThreads / 32];
  __shared__ uint32_t s_sum[kThreads / 32];
  m = __reduce_max_sync(kFullMask, m);
  n = __reduce_add_sync(kFullMask, n);
  const int warp = threadIdx.x / 32;
  if ((threadIdx.x & 31) == 0) {
    s_max[warp] = m;
    s_sum[warp] = n;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) {
      m = max(m, s_max[w]);
      n += s_sum[w];
    }
    if (out_max && m != 0) atomicMax(out_max, m);
    if (out_sum && n != 0) atomicAdd(out_sum, static_cast<unsigned long long>(n));
  }
}

// ---- kernels ------------------------------------------------------------------------------------

// |x| bits of one element in float32 position; NaN/Inf iff >= 0x7F800000.
__device__ __forceinline__ uint32_t abs_bits_bf16(uint32_t h) { return (h & 0x7FFFu) << 16; }

template <bool kBf16>
__global__ void nvfp4_amax_kernel(const uint4* __restrict__ x, int64_t n_elems,
                                  uint32_t* __restrict__ amax_bits,
                                  unsigned long long* __restrict__ n_nonfinite) {
  constexpr int kPerVec = kBf16 ? 8 : 4;
  const int64_t n_vec = n_elems / kPerVec;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  uint32_t m = 0, bad = 0;
  auto take = [&](uint32_t abs_bits) {
    m = max(m, abs_bits);
    bad += abs_bits >= 0x7F800000u;
  };
  for (int64_t i = tid; i < n_vec; i += stride) {
    const uint4 v = __ldg(x + i);
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (kBf16) {
        take(abs_bits_bf16(w[j]));
        take(abs_bits_bf16(w[j] >> 16));
      } else {
        take(w[j] & 0x7FFFFFFFu);
      }
    }
  }
  const int64_t tail = n_vec * kPerVec + tid;  // at most kPerVec - 1 leftover elements
  if (tail < n_elems) {
    if (kBf16) {
      take(abs_bits_bf16(reinterpret_cast<const uint16_t*>(x)[tail]));
    } else {
      take(reinterpret_cast<const uint32_t*>(x)[tail] & 0x7FFFFFFFu);
    }
  }
  block_max_add(m, bad, amax_bits, n_nonfinite);
}

__global__ void nvfp4_scale_2_kernel(const float* amax, float* scale_2,
                                     Nvfp4ScaleDivision division) {
  *scale_2 = nvfp4_scale_from_amax(*amax, division);
}

// ---- quantize ----------------------------------------------------------------------------------
// The per-block work limits this kernel (integer compares and selects: the ALU pipe), so the hot
// path is cut down, with the same numerics/ functions as nvfp4_quantize_block_bf16:
// - the division-free bounds (nvfp4_bf16_bounds) depend only on the E4M3 scale byte (scale_2 is
//   per tensor), so each CTA builds them once for all 256 bytes in shared memory;
// - block amax with packed 16x2 maxima; NaN/Inf counting only for a block whose amax is NaN/Inf;
// - nvfp4_encode_bf16 evaluated on two elements at once (encode_pair below);
// - a block that is not finite, or whose divisor is outside the bounds' range, takes
//   nvfp4_quantize_block_bf16 itself (quantize_block_general).

// Scale byte c's bounds as complements: words 0-6 = (0x8000 - magnitude[k]) in both 16-bit halves,
// word 7 = 1 if the fast path may use them (bounds valid and each in [1, 0x7FFF]).
struct alignas(16) Nvfp4BoundsEntry {
  uint4 lo, hi;
};

__device__ __forceinline__ void build_bounds_table(float scale_2, Nvfp4BoundsEntry* table) {
  for (int c = threadIdx.x; c < 256; c += blockDim.x) {
    Nvfp4Bf16Bounds b{};
    bool valid = nvfp4_bf16_bounds(nvfp4_block_divisor(static_cast<uint8_t>(c), scale_2), &b);
    uint32_t comp[7];
#pragma unroll
    for (int k = 0; k < 7; ++k) {
      valid = valid && b.magnitude[k] >= 1 && b.magnitude[k] <= 0x7FFFu;
      comp[k] = ((0x8000u - b.magnitude[k]) & 0xFFFFu) * 0x10001u;
    }
    table[c].lo = make_uint4(comp[0], comp[1], comp[2], comp[3]);
    table[c].hi = make_uint4(comp[4], comp[5], comp[6], valid ? 1u : 0u);
  }
  __syncthreads();
}

// nvfp4_encode_bf16 of both BF16 halves of w, for finite elements (|x| bits < 0x7F80). Per half,
// a + (0x8000 - magnitude[k]) stays below 0x10000 (no carry into the other half) and has bit 15
// set iff a >= magnitude[k]. The bounds ascend, so these 7 flags are a thermometer code of the
// magnitude index m = #{k : a >= magnitude[k]}: bit0(m) = xor of all 7, bit1(m) = g1^g3^g5,
// bit2(m) = g3. Sign: x < 0 and a != 0 (a <= 0x7F80 holds). Returns the low half's code in bits
// 12-15 and the high half's in bits 28-31 (other bits are garbage).
__device__ __forceinline__ uint32_t encode_pair(uint32_t w, const uint32_t (&comp)[7]) {
  const uint32_t a = w & 0x7FFF7FFFu;
  uint32_t g[7];
#pragma unroll
  for (int k = 0; k < 7; ++k) g[k] = a + comp[k];
  const uint32_t bit0 = g[0] ^ g[1] ^ g[2] ^ g[3] ^ g[4] ^ g[5] ^ g[6];
  const uint32_t bit1 = g[1] ^ g[3] ^ g[5];
  const uint32_t sign = w & (a + 0x7FFF7FFFu);  // bit 15: x < 0 and a >= 1
  return ((bit0 >> 3) & 0x10001000u) | ((bit1 >> 2) & 0x20002000u) | ((g[3] >> 1) & 0x40004000u) |
         (sign & 0x80008000u);
}

// Four encode_pair results (elements 0-7) -> 4 packed bytes, low nibble = even element.
__device__ __forceinline__ uint32_t pack_pairs(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3) {
  // Bytes holding the codes in their high nibble: [c0.b1, c0.b3, c1.b1, c1.b3].
  const uint32_t x01 = __byte_perm(c0, c1, 0x7531), x23 = __byte_perm(c2, c3, 0x7531);
  // Bytes 0 and 2 become (even code | odd code << 4).
  const uint32_t y01 = ((x01 >> 4) & 0x0F0F0F0Fu) | ((x01 >> 8) & 0xF0F0F0F0u);
  const uint32_t y23 = ((x23 >> 4) & 0x0F0F0F0Fu) | ((x23 >> 8) & 0xF0F0F0F0u);
  return __byte_perm(y01, y23, 0x6420);
}

// Rare path (NaN/Inf block, or a divisor outside the bounds' range): the shared block function.
__device__ __noinline__ uint2 quantize_block_general(uint4 v0, uint4 v1, float scale_2,
                                                     uint32_t* scale_code, uint32_t* n_bad) {
  const uint32_t w[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
  uint32_t out[2];
  *scale_code = nvfp4_quantize_block_bf16(w, scale_2, out, n_bad);
  return make_uint2(out[0], out[1]);
}

// One 16-element block (32 bytes in v0, v1): returns the 8 packed bytes, sets the scale byte.
// Bit-identical to nvfp4_quantize_block_bf16.
__device__ __forceinline__ uint2 quantize_block(uint4 v0, uint4 v1, float scale_2,
                                                const Nvfp4BoundsEntry* table, uint32_t* scale_code,
                                                uint32_t* n_bad) {
  constexpr uint32_t kAbs = 0x7FFF7FFFu;
  // max |x| bits over the block, per 16-bit half then across the halves (a NaN wins).
  const uint32_t m2 = __vimax3_u16x2(__vimax3_u16x2(v0.x & kAbs, v0.y & kAbs, v0.z & kAbs),
                                     __vimax3_u16x2(v0.w & kAbs, v1.x & kAbs, v1.y & kAbs),
                                     __vimax3_u16x2(v1.z & kAbs, v1.w & kAbs, 0u));
  const uint32_t amax16 = max(m2 & 0xFFFFu, m2 >> 16);
  if (amax16 < 0x7F80u) {  // finite block: n_nonfinite += 0
    const uint8_t code = nvfp4_block_scale(bits_to_float(amax16 << 16), scale_2);
    const uint4 hi = table[code].hi;
    if (hi.w != 0) {
      const uint4 lo = table[code].lo;
      const uint32_t comp[7] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z};
      *scale_code = code;
      return make_uint2(pack_pairs(encode_pair(v0.x, comp), encode_pair(v0.y, comp),
                                   encode_pair(v0.z, comp), encode_pair(v0.w, comp)),
                        pack_pairs(encode_pair(v1.x, comp), encode_pair(v1.y, comp),
                                   encode_pair(v1.z, comp), encode_pair(v1.w, comp)));
    }
  }
  return quantize_block_general(v0, v1, scale_2, scale_code, n_bad);
}

// Grid-stride over 16-element blocks, two per thread per step (blk and blk + stride) so that
// 64 bytes per thread are in flight. A warp's loads cover 1 KiB contiguous (its two 16-byte
// loads are the two halves of the same 32-byte sectors, the second served by L1); its stores are
// 256 contiguous bytes of codes and 32 of scales. One atomic per CTA for the NaN/Inf count.
__global__ void __launch_bounds__(kThreads)
    nvfp4_quantize_kernel(const uint4* __restrict__ x, int64_t n_blocks,
                          const float* __restrict__ scale_2_ptr, uint2* __restrict__ packed,
                          uint8_t* __restrict__ scale,
                          unsigned long long* __restrict__ n_nonfinite) {
  __shared__ Nvfp4BoundsEntry table[256];
  const float scale_2 = __ldg(scale_2_ptr);
  build_bounds_table(scale_2, table);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t blk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  uint32_t bad = 0;
  for (; blk + stride < n_blocks; blk += 2 * stride) {
    const uint4 a0 = __ldg(x + 2 * blk), a1 = __ldg(x + 2 * blk + 1);
    const uint4 b0 = __ldg(x + 2 * (blk + stride)), b1 = __ldg(x + 2 * (blk + stride) + 1);
    uint32_t sa, sb;
    const uint2 pa = quantize_block(a0, a1, scale_2, table, &sa, &bad);
    const uint2 pb = quantize_block(b0, b1, scale_2, table, &sb, &bad);
    __stcs(packed + blk, pa);
    __stcs(packed + blk + stride, pb);
    scale[blk] = static_cast<uint8_t>(sa);  // Nvfp4ScaleLayout::kLinear: flat block index
    scale[blk + stride] = static_cast<uint8_t>(sb);
  }
  if (blk < n_blocks) {  // at most one block left for this thread
    uint32_t s;
    const uint2 p =
        quantize_block(__ldg(x + 2 * blk), __ldg(x + 2 * blk + 1), scale_2, table, &s, &bad);
    __stcs(packed + blk, p);
    scale[blk] = static_cast<uint8_t>(s);
  }
  const uint32_t counts[1] = {bad};
  block_add(counts, n_nonfinite);
}

// One thread per 16-element block: 8-byte load + scale byte, four float4 stores.
__global__ void nvfp4_dequantize_kernel(const uint2* __restrict__ packed,
                                        const uint8_t* __restrict__ scale,
                                        const float* __restrict__ scale_2_ptr, int64_t n_blocks,
                                        float4* __restrict__ y) {
  const int64_t blk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (blk >= n_blocks) return;
  const float scale_2 = __ldg(scale_2_ptr);
  const uint2 v = __ldg(packed + blk);
  const uint8_t scale_code = __ldg(scale + blk);
  const uint32_t w[2] = {v.x, v.y};
  float out[kNvfp4BlockSize];
#pragma unroll
  for (int i = 0; i < kNvfp4BlockSize; ++i) {
    const uint8_t code = static_cast<uint8_t>((w[i / 8] >> (4 * (i % 8))) & 0xFu);
    out[i] = nvfp4_decode(code, scale_code, scale_2);
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    y[4 * blk + i] = make_float4(out[4 * i], out[4 * i + 1], out[4 * i + 2], out[4 * i + 3]);
  }
}

__global__ void mxfp4_e8m0_max_kernel(const uint4* __restrict__ e8m0, int64_t n_scales,
                                      uint32_t* __restrict__ e8m0_max) {
  const int64_t n_vec = n_scales / 16;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  uint32_t m4 = 0;  // four byte-wise maxima
  for (int64_t i = tid; i < n_vec; i += stride) {
    const uint4 v = __ldg(e8m0 + i);
    m4 = __vmaxu4(m4, __vmaxu4(__vmaxu4(v.x, v.y), __vmaxu4(v.z, v.w)));
  }
  uint32_t m = max(max(m4 & 0xFFu, (m4 >> 8) & 0xFFu), max((m4 >> 16) & 0xFFu, m4 >> 24));
  const int64_t tail = n_vec * 16 + tid;
  if (tail < n_scales)
    m = max(m, static_cast<uint32_t>(reinterpret_cast<const uint8_t*>(e8m0)[tail]));
  block_max_add(m, 0, e8m0_max, nullptr);
}

// ---- lossless MXFP4 -> NVFP4 cast --------------------------------------------------------------
// One 32-element MXFP4 block per thread and step, grid-stride, two blocks (b32 and b32 + stride)
// per step so that both loads are in flight together. Per warp and block: 512 contiguous bytes
// of codes in and out (16-byte loads/stores), 32 bytes of E8M0, 64 bytes of E4M3 pairs. The
// counts stay in registers and are added once per CTA.
struct CastCounts {
  uint32_t n[kMxfp4CountSlots] = {0, 0, 0};
};

__device__ __forceinline__ uint4 cast_block(uint4 v, uint8_t s, int k_max, int k_max_local,
                                            float scale_2, uint16_t* scale_pair,
                                            CastCounts* counts) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
  counts->n[kMxfp4CountLossless] += mxfp4_block_lossless(s, k_max) ? 1u : 0u;
  counts->n[kMxfp4CountFallback] += mxfp4_block_in_range(s, k_max_local) ? 0u : 1u;
  uint32_t o[4];
  const uint8_t scale_code =
      mxfp4_to_nvfp4_block(w, s, k_max_local, scale_2, o, &counts->n[kMxfp4CountNonfinite]);
  *scale_pair = static_cast<uint16_t>(scale_code | (scale_code << 8));  // both 16-halves
  return make_uint4(o[0], o[1], o[2], o[3]);
}

__global__ void __launch_bounds__(kThreads)
    mxfp4_to_nvfp4_kernel(const uint4* __restrict__ packed, const uint8_t* __restrict__ e8m0,
                          int64_t n_blocks32, const uint32_t* __restrict__ e8m0_max,
                          const uint32_t* __restrict__ e8m0_max_pair,
                          uint4* __restrict__ out_packed, uint16_t* __restrict__ out_scale,
                          float* __restrict__ out_scale_2,
                          unsigned long long* __restrict__ counts) {
  const uint32_t self_max = __ldg(e8m0_max);
  int k_max = mxfp4_k_max(self_max);
  if (e8m0_max_pair) k_max = max(k_max, mxfp4_k_max(__ldg(e8m0_max_pair)));
  const int k_max_local = mxfp4_k_max_local(self_max);
  const float scale_2 = mxfp4_nvfp4_scale_2(k_max);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t b32 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b32 == 0) *out_scale_2 = scale_2;

  CastCounts c;
  for (; b32 + stride < n_blocks32; b32 += 2 * stride) {
    const uint4 va = __ldcs(packed + b32), vb = __ldcs(packed + b32 + stride);
    const uint8_t sa = __ldcs(e8m0 + b32), sb = __ldcs(e8m0 + b32 + stride);
    uint16_t pa, pb;
    const uint4 oa = cast_block(va, sa, k_max, k_max_local, scale_2, &pa, &c);
    const uint4 ob = cast_block(vb, sb, k_max, k_max_local, scale_2, &pb, &c);
    __stcs(out_packed + b32, oa);
    __stcs(out_packed + b32 + stride, ob);
    out_scale[b32] = pa;
    out_scale[b32 + stride] = pb;
  }
  if (b32 < n_blocks32) {  // at most one block left for this thread
    uint16_t p;
    const uint4 o =
        cast_block(__ldcs(packed + b32), __ldcs(e8m0 + b32), k_max, k_max_local, scale_2, &p, &c);
    __stcs(out_packed + b32, o);
    out_scale[b32] = p;
  }
  block_add(c.n, counts);
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------------------

void launch_nvfp4_amax(const Nvfp4AmaxParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_nvfp4_amax");
  QF_CHECK(p.dtype == DType::kBF16 || p.dtype == DType::kF32, "nvfp4 amax: dtype",
           dtype_name(p.dtype), "is not BF16 or F32");
  QF_CHECK(p.n_elems >= 0 && p.amax && p.n_nonfinite && (p.x || p.n_elems == 0),
           "nvfp4 amax: bad params, n_elems", p.n_elems);
  QF_CHECK_ALIGNED(p.x, 16, "nvfp4 amax");
  if (!p.accumulate) {
    QF_CUDA_CHECK(cudaMemsetAsync(p.amax, 0, sizeof(float), stream), "nvfp4 amax reset");
    QF_CUDA_CHECK(cudaMemsetAsync(p.n_nonfinite, 0, sizeof(uint64_t), stream), "nvfp4 amax reset");
  }
  if (p.n_elems == 0) return;
  const bool bf16 = p.dtype == DType::kBF16;
  const unsigned grid = reduction_grid(p.n_elems / (bf16 ? 8 : 4) + 1);
  auto* x = static_cast<const uint4*>(p.x);
  auto* amax = reinterpret_cast<uint32_t*>(p.amax);
  if (bf16) {
    nvfp4_amax_kernel<true>
        <<<grid, kThreads, 0, stream>>>(x, p.n_elems, amax, as_ull(p.n_nonfinite));
  } else {
    nvfp4_amax_kernel<false>
        <<<grid, kThreads, 0, stream>>>(x, p.n_elems, amax, as_ull(p.n_nonfinite));
  }
  QF_KERNEL_CHECK();
}

void launch_nvfp4_scale_2(const float* amax, float* scale_2, Nvfp4ScaleDivision division,
                          cudaStream_t stream) {
  QF_NVTX_RANGE("launch_nvfp4_scale_2");
  QF_CHECK(amax && scale_2, "nvfp4 scale_2: null pointer");
  nvfp4_scale_2_kernel<<<1, 1, 0, stream>>>(amax, scale_2, division);
  QF_KERNEL_CHECK();
}

void launch_nvfp4_quantize(const Nvfp4QuantizeParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_nvfp4_quantize");
  nvfp4_check_shape(p.n_rows, p.n_cols, p.layout);
  QF_CHECK(p.scale_2 && p.n_nonfinite && (p.n_rows * p.n_cols == 0 || (p.x && p.packed && p.scale)),
           "nvfp4 quantize: null pointer");
  QF_CHECK_ALIGNED(p.x, 16, "nvfp4 quantize");
  QF_CHECK_ALIGNED(p.packed, 8, "nvfp4 quantize");
  QF_CUDA_CHECK(cudaMemsetAsync(p.n_nonfinite, 0, sizeof(uint64_t), stream), "nvfp4 quantize");
  const int64_t n_blocks = p.n_rows * (p.n_cols / kNvfp4BlockSize);
  if (n_blocks == 0) return;
  nvfp4_quantize_kernel<<<resident_grid(nvfp4_quantize_kernel, n_blocks), kThreads, 0, stream>>>(
      reinterpret_cast<const uint4*>(p.x), n_blocks, p.scale_2, reinterpret_cast<uint2*>(p.packed),
      p.scale, as_ull(p.n_nonfinite));
  QF_KERNEL_CHECK();
}

void launch_nvfp4_dequantize(const Nvfp4DequantizeParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_nvfp4_dequantize");
  nvfp4_check_shape(p.n_rows, p.n_cols, p.layout);
  QF_CHECK(p.scale_2 && (p.n_rows * p.n_cols == 0 || (p.packed && p.scale && p.y)),
           "nvfp4 dequantize: null pointer");
  QF_CHECK_ALIGNED(p.packed, 8, "nvfp4 dequantize");
  QF_CHECK_ALIGNED(p.y, 16, "nvfp4 dequantize");
  const int64_t n_blocks = p.n_rows * (p.n_cols / kNvfp4BlockSize);
  if (n_blocks == 0) return;
  nvfp4_dequantize_kernel<<<grid_for(n_blocks), kThreads, 0, stream>>>(
      reinterpret_cast<const uint2*>(p.packed), p.scale, p.scale_2, n_blocks,
      reinterpret_cast<float4*>(p.y));
  QF_KERNEL_CHECK();
}

void launch_mxfp4_e8m0_max(const Mxfp4E8m0MaxParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_mxfp4_e8m0_max");
  QF_CHECK(p.n_scales >= 0 && p.e8m0_max && (p.e8m0 || p.n_scales == 0),
           "mxfp4 e8m0 max: bad params, n_scales", p.n_scales);
  QF_CHECK_ALIGNED(p.e8m0, 16, "mxfp4 e8m0 max");
  if (!p.accumulate) {
    QF_CUDA_CHECK(cudaMemsetAsync(p.e8m0_max, 0, sizeof(uint32_t), stream), "mxfp4 e8m0 max");
  }
  if (p.n_scales == 0) return;
  mxfp4_e8m0_max_kernel<<<reduction_grid(p.n_scales / 16 + 1), kThreads, 0, stream>>>(
      reinterpret_cast<const uint4*>(p.e8m0), p.n_scales, p.e8m0_max);
  QF_KERNEL_CHECK();
}

void launch_mxfp4_to_nvfp4(const Mxfp4ToNvfp4Params& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_mxfp4_to_nvfp4");
  mxfp4_check_shape(p.n_rows, p.n_cols);
  QF_CHECK(p.e8m0_max && p.out_scale_2 && p.counts &&
               (p.n_rows * p.n_cols == 0 || (p.packed && p.e8m0 && p.out_packed && p.out_scale)),
           "mxfp4 -> nvfp4: null pointer");
  QF_CHECK_ALIGNED(p.packed, 16, "mxfp4 -> nvfp4");
  QF_CHECK_ALIGNED(p.out_packed, 16, "mxfp4 -> nvfp4");
  QF_CHECK_ALIGNED(p.out_scale, 2, "mxfp4 -> nvfp4");
  QF_CUDA_CHECK(cudaMemsetAsync(p.counts, 0, kMxfp4CountSlots * sizeof(uint64_t), stream),
                "mxfp4 -> nvfp4");
  const int64_t n_blocks32 = p.n_rows * (p.n_cols / kMxfp4BlockSize);
  // At least one CTA, so that out_scale_2 is written for an empty tensor too.
  mxfp4_to_nvfp4_kernel<<<resident_grid(mxfp4_to_nvfp4_kernel, n_blocks32), kThreads, 0, stream>>>(
      reinterpret_cast<const uint4*>(p.packed), p.e8m0, n_blocks32, p.e8m0_max, p.e8m0_max_pair,
      reinterpret_cast<uint4*>(p.out_packed), reinterpret_cast<uint16_t*>(p.out_scale),
      p.out_scale_2, as_ull(p.counts));
  QF_KERNEL_CHECK();
}

}  // namespace qf::kernels
