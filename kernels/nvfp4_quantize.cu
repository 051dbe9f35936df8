// CUDA kernels and launchers of the NVFP4 family (declared in nvfp4_quantize.cuh). One thread per
// 16-element NVFP4 block or 32-element MXFP4 block, 16-byte loads; the scalar math is the same
// numerics/ header code as the CPU references, so results are bit-identical to them.
#include <cuda_runtime.h>

#include <algorithm>

#include "core/check.hpp"
#include "kernels/nvfp4_quantize.cuh"

namespace qf::kernels {

using namespace qf::numerics;

namespace {

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xFFFFFFFFu;
static_assert(sizeof(unsigned long long) == sizeof(uint64_t), "counter type");

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// Grid size for n_items threads of kThreads each, checked against the 2^31 - 1 CTA limit.
unsigned grid_for(int64_t n_items) {
  const int64_t n_ctas = std::max<int64_t>(1, ceil_div(n_items, kThreads));
  QF_CHECK(n_ctas <= 0x7FFFFFFF, "tensor too large for one launch:", n_items, "threads");
  return static_cast<unsigned>(n_ctas);
}
bool is_aligned(const void* p, uintptr_t n_bytes) {
  return reinterpret_cast<uintptr_t>(p) % n_bytes == 0;
}
unsigned long long* as_ull(uint64_t* p) { return reinterpret_cast<unsigned long long*>(p); }

// Grid for grid-stride reductions: enough CTAs to fill the device, no more.
unsigned reduction_grid(int64_t n_items) {
  int device = 0, n_sms = 0;
  QF_CUDA_CHECK(cudaGetDevice(&device), "reduction grid");
  QF_CUDA_CHECK(cudaDeviceGetAttribute(&n_sms, cudaDevAttrMultiProcessorCount, device),
                "reduction grid");
  return static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>(ceil_div(n_items, kThreads), 8LL * n_sms)));
}

// Adds each lane's n into *counter with one atomic per warp, only when some lane has n != 0.
// Every lane of the warp must call it (the kernels below never return early).
__device__ __forceinline__ void warp_count(unsigned long long* counter, uint32_t n) {
  if (__any_sync(kFullMask, n != 0)) {
    const uint32_t total = __reduce_add_sync(kFullMask, n);
    if ((threadIdx.x & 31) == 0) atomicAdd(counter, static_cast<unsigned long long>(total));
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

// One thread per 16-element block: two 16-byte loads, one 8-byte store, one scale byte.
__global__ void nvfp4_quantize_kernel(const uint4* __restrict__ x, int64_t n_blocks,
                                      const float* __restrict__ scale_2_ptr,
                                      uint2* __restrict__ packed, uint8_t* __restrict__ scale,
                                      unsigned long long* __restrict__ n_nonfinite) {
  const int64_t blk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  uint32_t bad = 0;
  if (blk < n_blocks) {
    const float scale_2 = __ldg(scale_2_ptr);
    const uint4 v0 = __ldcs(x + 2 * blk);
    const uint4 v1 = __ldcs(x + 2 * blk + 1);
    const uint32_t w[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
    uint32_t out[2];
    const uint8_t scale_code = nvfp4_quantize_block_bf16(w, scale_2, out, &bad);
    packed[blk] = make_uint2(out[0], out[1]);
    scale[blk] = scale_code;  // Nvfp4ScaleLayout::kLinear: flat block index
  }
  warp_count(n_nonfinite, bad);
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

// One thread per 32-element MXFP4 block: 16-byte load + E8M0 byte; 16-byte store + 2 scales.
__global__ void mxfp4_to_nvfp4_kernel(
    const uint4* __restrict__ packed, const uint8_t* __restrict__ e8m0, int64_t n_blocks32,
    const uint32_t* __restrict__ e8m0_max, const uint32_t* __restrict__ e8m0_max_pair,
    uint4* __restrict__ out_packed, uint16_t* __restrict__ out_scale,
    float* __restrict__ out_scale_2, unsigned long long* __restrict__ counts) {
  const int64_t b32 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint32_t self_max = __ldg(e8m0_max);
  int k_max = mxfp4_k_max(self_max);
  if (e8m0_max_pair) k_max = max(k_max, mxfp4_k_max(__ldg(e8m0_max_pair)));
  const int k_max_local = mxfp4_k_max_local(self_max);
  const float scale_2 = mxfp4_nvfp4_scale_2(k_max);
  if (b32 == 0) *out_scale_2 = scale_2;

  uint32_t n_lossless = 0, n_fallback = 0, n_bad = 0;
  if (b32 < n_blocks32) {
    const uint4 v = __ldcs(packed + b32);
    const uint8_t s = __ldcs(e8m0 + b32);
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    n_lossless = mxfp4_block_lossless(s, k_max);
    n_fallback = !mxfp4_block_in_range(s, k_max_local);
    uint32_t o[4];
    const uint8_t scale_code = mxfp4_to_nvfp4_block(w, s, k_max_local, scale_2, o, &n_bad);
    __stcs(out_packed + b32, make_uint4(o[0], o[1], o[2], o[3]));
    out_scale[b32] = static_cast<uint16_t>(scale_code | (scale_code << 8));
  }
  warp_count(counts + kMxfp4CountLossless, n_lossless);
  warp_count(counts + kMxfp4CountFallback, n_fallback);
  warp_count(counts + kMxfp4CountNonfinite, n_bad);
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------------------

void launch_nvfp4_amax(const Nvfp4AmaxParams& p, cudaStream_t stream) {
  QF_CHECK(p.dtype == DType::kBF16 || p.dtype == DType::kF32, "nvfp4 amax: dtype",
           dtype_name(p.dtype), "is not BF16 or F32");
  QF_CHECK(p.n_elems >= 0 && p.amax && p.n_nonfinite && (p.x || p.n_elems == 0),
           "nvfp4 amax: bad params, n_elems", p.n_elems);
  QF_CHECK(is_aligned(p.x, 16), "nvfp4 amax: input not 16-byte aligned");
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
  QF_CHECK(amax && scale_2, "nvfp4 scale_2: null pointer");
  nvfp4_scale_2_kernel<<<1, 1, 0, stream>>>(amax, scale_2, division);
  QF_KERNEL_CHECK();
}

void launch_nvfp4_quantize(const Nvfp4QuantizeParams& p, cudaStream_t stream) {
  nvfp4_check_shape(p.n_rows, p.n_cols, p.layout);
  QF_CHECK(p.scale_2 && p.n_nonfinite && (p.n_rows * p.n_cols == 0 || (p.x && p.packed && p.scale)),
           "nvfp4 quantize: null pointer");
  QF_CHECK(is_aligned(p.x, 16) && is_aligned(p.packed, 8), "nvfp4 quantize: x needs 16-byte and",
           "packed 8-byte alignment");
  QF_CUDA_CHECK(cudaMemsetAsync(p.n_nonfinite, 0, sizeof(uint64_t), stream), "nvfp4 quantize");
  const int64_t n_blocks = p.n_rows * (p.n_cols / kNvfp4BlockSize);
  if (n_blocks == 0) return;
  nvfp4_quantize_kernel<<<grid_for(n_blocks), kThreads, 0, stream>>>(
      reinterpret_cast<const uint4*>(p.x), n_blocks, p.scale_2, reinterpret_cast<uint2*>(p.packed),
      p.scale, as_ull(p.n_nonfinite));
  QF_KERNEL_CHECK();
}

void launch_nvfp4_dequantize(const Nvfp4DequantizeParams& p, cudaStream_t stream) {
  nvfp4_check_shape(p.n_rows, p.n_cols, p.layout);
  QF_CHECK(p.scale_2 && (p.n_rows * p.n_cols == 0 || (p.packed && p.scale && p.y)),
           "nvfp4 dequantize: null pointer");
  QF_CHECK(is_aligned(p.packed, 8) && is_aligned(p.y, 16),
           "nvfp4 dequantize: packed needs 8-byte and y 16-byte alignment");
  const int64_t n_blocks = p.n_rows * (p.n_cols / kNvfp4BlockSize);
  if (n_blocks == 0) return;
  nvfp4_dequantize_kernel<<<grid_for(n_blocks), kThreads, 0, stream>>>(
      reinterpret_cast<const uint2*>(p.packed), p.scale, p.scale_2, n_blocks,
      reinterpret_cast<float4*>(p.y));
  QF_KERNEL_CHECK();
}

void launch_mxfp4_e8m0_max(const Mxfp4E8m0MaxParams& p, cudaStream_t stream) {
  QF_CHECK(p.n_scales >= 0 && p.e8m0_max && (p.e8m0 || p.n_scales == 0),
           "mxfp4 e8m0 max: bad params, n_scales", p.n_scales);
  QF_CHECK(is_aligned(p.e8m0, 16), "mxfp4 e8m0 max: scales not 16-byte aligned");
  if (!p.accumulate) {
    QF_CUDA_CHECK(cudaMemsetAsync(p.e8m0_max, 0, sizeof(uint32_t), stream), "mxfp4 e8m0 max");
  }
  if (p.n_scales == 0) return;
  mxfp4_e8m0_max_kernel<<<reduction_grid(p.n_scales / 16 + 1), kThreads, 0, stream>>>(
      reinterpret_cast<const uint4*>(p.e8m0), p.n_scales, p.e8m0_max);
  QF_KERNEL_CHECK();
}

void launch_mxfp4_to_nvfp4(const Mxfp4ToNvfp4Params& p, cudaStream_t stream) {
  mxfp4_check_shape(p.n_rows, p.n_cols);
  QF_CHECK(p.e8m0_max && p.out_scale_2 && p.counts &&
               (p.n_rows * p.n_cols == 0 || (p.packed && p.e8m0 && p.out_packed && p.out_scale)),
           "mxfp4 -> nvfp4: null pointer");
  QF_CHECK(is_aligned(p.packed, 16) && is_aligned(p.out_packed, 16) && is_aligned(p.out_scale, 2),
           "mxfp4 -> nvfp4: packed tensors need 16-byte and out_scale 2-byte alignment");
  QF_CUDA_CHECK(cudaMemsetAsync(p.counts, 0, kMxfp4CountSlots * sizeof(uint64_t), stream),
                "mxfp4 -> nvfp4");
  const int64_t n_blocks32 = p.n_rows * (p.n_cols / kMxfp4BlockSize);
  // At least one CTA, so that out_scale_2 is written for an empty tensor too.
  mxfp4_to_nvfp4_kernel<<<grid_for(n_blocks32), kThreads, 0, stream>>>(
      reinterpret_cast<const uint4*>(p.packed), p.e8m0, n_blocks32, p.e8m0_max, p.e8m0_max_pair,
      reinterpret_cast<uint4*>(p.out_packed), reinterpret_cast<uint16_t*>(p.out_scale),
      p.out_scale_2, as_ull(p.counts));
  QF_KERNEL_CHECK();
}

}  // namespace qf::kernels
