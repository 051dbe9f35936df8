// CUDA kernels and launchers of the dequant family (declared in dequant.cuh). Grid-stride loops
// with coalesced loads and 16-byte streaming stores; the per-element math is the numerics/ header
// code the CPU references use, so results are bit-identical to them.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/dequant.cuh"
#include "kernels/launch_util.cuh"

namespace qf::kernels {

using namespace qf::numerics;

namespace {

constexpr int kThreads = 256;
constexpr int kFp8VecElems = 8;       // per thread step: 8 codes (uint2) in, 8 BF16 (uint4) out
constexpr int kFp4VecElems = 8;       // per thread step: 4 packed bytes in, 8 BF16 (uint4) out
constexpr int kFp4WordsPerGroup = 4;  // 4 words x 4 bytes x 2 codes = one 32-element scale group
constexpr int64_t kMaxItems = 0x7FFFFFFF;  // 32-bit grid-stride index, with room for the stride
static_assert(kFp4WordsPerGroup * 4 * 2 == kFp4GroupCols, "FP4 word/group mismatch");
static_assert(kFp8TileCols % kFp8VecElems == 0, "an FP8 vector must not straddle two tiles");

// Enough CTAs to fill the device a few times over; the kernels grid-stride over the rest.
unsigned stride_grid(int64_t n_items) {
  const int64_t n_ctas = std::min<int64_t>(ceil_div(n_items, kThreads), 16LL * device_sm_count());
  return static_cast<unsigned>(std::max<int64_t>(1, n_ctas));
}

__device__ __forceinline__ uint32_t byte_at(uint32_t word, int j) {
  return (word >> (8 * j)) & 0xFFu;
}

__device__ __forceinline__ uint32_t pack_bf16x2(uint32_t lo, uint32_t hi) {
  return lo | (hi << 16);
}

}  // namespace

// ---- FP8 E4M3 x 128x128-tile scale -------------------------------------------------------------
// Thread step v covers codes [8v, 8v + 8) of the flat tensor, all in one row and one tile because
// n_cols % 8 == 0 and 128 % 8 == 0. lut[c] = e4m3_to_bf16(c) (exact) in shared memory.
template <bool kScaleE8m0>
static __global__ void fp8_block_dequant_vec_kernel(const uint2* __restrict__ codes,
                                                    const void* __restrict__ scale,
                                                    uint4* __restrict__ out, uint32_t n_vecs,
                                                    uint32_t n_vecs_per_row,
                                                    uint32_t n_scale_cols) {
  __shared__ uint16_t lut[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x)
    lut[i] = e4m3_to_bf16(static_cast<uint8_t>(i));
  __syncthreads();

  const uint32_t stride = gridDim.x * blockDim.x;
  for (uint32_t v = blockIdx.x * blockDim.x + threadIdx.x; v < n_vecs; v += stride) {
    const uint32_t row = v / n_vecs_per_row;
    const uint32_t col = (v - row * n_vecs_per_row) * kFp8VecElems;
    const uint32_t s = (row / kFp8TileRows) * n_scale_cols + col / kFp8TileCols;
    const uint2 in = __ldcs(codes + v);
    const uint32_t words[2] = {in.x, in.y};
    uint32_t h[kFp8VecElems];
    bool fast = false;
    int k = 0;
    float scale_f = 0.0f;
    if constexpr (kScaleE8m0) {
      const uint8_t b = __ldg(static_cast<const uint8_t*>(scale) + s);
      fast = fp8_scale_is_fast(b);
      k = static_cast<int>(b) - kE8m0Bias;
      scale_f = scale_value(b);
    } else {
      scale_f = __ldg(static_cast<const float*>(scale) + s);
    }
    if (fast) {
#pragma unroll
      for (int j = 0; j < kFp8VecElems; ++j) {
        h[j] = bf16_shift_exponent(lut[byte_at(words[j / 4], j % 4)], k);
      }
    } else {
#pragma unroll
      for (int j = 0; j < kFp8VecElems; ++j) {
        h[j] = scaled_to_bf16(bf16_to_float(lut[byte_at(words[j / 4], j % 4)]), scale_f);
      }
    }
    __stcs(out + v, make_uint4(pack_bf16x2(h[0], h[1]), pack_bf16x2(h[2], h[3]),
                               pack_bf16x2(h[4], h[5]), pack_bf16x2(h[6], h[7])));
  }
}

// Fallback for n_cols % 8 != 0 or unaligned pointers: one element per thread step.
template <bool kScaleE8m0>
static __global__ void fp8_block_dequant_scalar_kernel(const uint8_t* __restrict__ codes,
                                                       const void* __restrict__ scale,
                                                       uint16_t* __restrict__ out, uint32_t n_elems,
                                                       uint32_t n_cols, uint32_t n_scale_cols) {
  const uint32_t stride = gridDim.x * blockDim.x;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride) {
    const uint32_t row = i / n_cols;
    const uint32_t col = i - row * n_cols;
    const uint32_t s = (row / kFp8TileRows) * n_scale_cols + col / kFp8TileCols;
    if constexpr (kScaleE8m0) {
      out[i] = fp8_block_to_bf16_e8m0(codes[i], static_cast<const uint8_t*>(scale)[s]);
    } else {
      out[i] = fp8_block_to_bf16(codes[i], static_cast<const float*>(scale)[s]);
    }
  }
}

void launch_fp8_block_dequant(const Fp8BlockDequantParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_fp8_block_dequant");
  fp8_block_dequant_check(p);
  const int64_t n_elems = p.n_rows * p.n_cols;
  if (n_elems == 0) return;
  QF_CHECK(n_elems <= kMaxItems * kFp8VecElems, "FP8 block dequant:", p.n_rows, "x", p.n_cols,
           "is too large for one launch; split the rows");
  const auto n_scale_cols = static_cast<uint32_t>(fp8_block_scale_cols(p.n_cols));
  const bool e8m0 = p.scale_dtype == DType::kF8E8M0;
  const bool vec = p.n_cols % kFp8VecElems == 0 && is_aligned(p.codes, sizeof(uint2)) &&
                   is_aligned(p.out, sizeof(uint4));
  if (vec) {
    const int64_t n_vecs = n_elems / kFp8VecElems;
    const auto* codes = reinterpret_cast<const uint2*>(p.codes);
    auto* out = reinterpret_cast<uint4*>(p.out);
    const auto n_vecs_per_row = static_cast<uint32_t>(p.n_cols / kFp8VecElems);
    const unsigned grid = stride_grid(n_vecs);
    if (e8m0) {
      fp8_block_dequant_vec_kernel<true><<<grid, kThreads, 0, stream>>>(
          codes, p.scale, out, static_cast<uint32_t>(n_vecs), n_vecs_per_row, n_scale_cols);
    } else {
      fp8_block_dequant_vec_kernel<false><<<grid, kThreads, 0, stream>>>(
          codes, p.scale, out, static_cast<uint32_t>(n_vecs), n_vecs_per_row, n_scale_cols);
    }
  } else {
    QF_CHECK(n_elems <= kMaxItems, "FP8 block dequant (unvectorized):", p.n_rows, "x", p.n_cols,
             "is too large for one launch; split the rows");
    const unsigned grid = stride_grid(n_elems);
    const auto n = static_cast<uint32_t>(n_elems);
    const auto n_cols = static_cast<uint32_t>(p.n_cols);
    if (e8m0) {
      fp8_block_dequant_scalar_kernel<true>
          <<<grid, kThreads, 0, stream>>>(p.codes, p.scale, p.out, n, n_cols, n_scale_cols);
    } else {
      fp8_block_dequant_scalar_kernel<false>
          <<<grid, kThreads, 0, stream>>>(p.codes, p.scale, p.out, n, n_cols, n_scale_cols);
    }
  }
  QF_KERNEL_CHECK();
}

// ---- FP4 E2M1 x per-32 UE8M0 scale -------------------------------------------------------------
// Thread step w covers packed bytes [4w, 4w + 4) = elements [8w, 8w + 8). Because n_cols % 32 == 0
// the scale groups tile the flat tensor, so the group of word w is w / 4 and its scale is scale[w /
// 4] in the row-major [n_rows, n_cols/32] layout. lut[byte] holds the two decoded BF16 codes of a
// byte (low nibble in the low half, which is also the output order).
static __global__ void fp4_block_dequant_kernel(const uint32_t* __restrict__ packed,
                                                const uint8_t* __restrict__ scale,
                                                uint4* __restrict__ out, uint32_t n_words) {
  __shared__ uint32_t lut[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) {
    const auto byte = static_cast<uint8_t>(i);
    lut[i] = pack_bf16x2(e2m1_to_bf16(e2m1_unpack_lo(byte)), e2m1_to_bf16(e2m1_unpack_hi(byte)));
  }
  __syncthreads();

  const uint32_t stride = gridDim.x * blockDim.x;
  for (uint32_t w = blockIdx.x * blockDim.x + threadIdx.x; w < n_words; w += stride) {
    const uint32_t in = __ldcs(packed + w);
    const uint8_t b = __ldg(scale + w / kFp4WordsPerGroup);
    uint32_t o[4];
    if (fp4_scale_is_fast(b)) {
      const int k = static_cast<int>(b) - kE8m0Bias;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t pair = lut[byte_at(in, j)];
        o[j] = pack_bf16x2(bf16_shift_exponent(static_cast<uint16_t>(pair & 0xFFFFu), k),
                           bf16_shift_exponent(static_cast<uint16_t>(pair >> 16), k));
      }
    } else {
      const float scale_f = scale_value(b);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t pair = lut[byte_at(in, j)];
        o[j] = pack_bf16x2(
            scaled_to_bf16(bf16_to_float(static_cast<uint16_t>(pair & 0xFFFFu)), scale_f),
            scaled_to_bf16(bf16_to_float(static_cast<uint16_t>(pair >> 16)), scale_f));
      }
    }
    __stcs(out + w, make_uint4(o[0], o[1], o[2], o[3]));
  }
}

void launch_fp4_block_dequant(const Fp4BlockDequantParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_fp4_block_dequant");
  fp4_block_dequant_check(p);
  const int64_t n_elems = p.n_rows * p.n_cols;
  if (n_elems == 0) return;
  QF_CHECK_ALIGNED(p.packed, sizeof(uint32_t), "FP4 block dequant");
  QF_CHECK_ALIGNED(p.out, sizeof(uint4), "FP4 block dequant");
  const int64_t n_words = n_elems / kFp4VecElems;
  QF_CHECK(n_words <= kMaxItems, "FP4 block dequant:", p.n_rows, "x", p.n_cols,
           "is too large for one launch; split the rows");
  fp4_block_dequant_kernel<<<stride_grid(n_words), kThreads, 0, stream>>>(
      reinterpret_cast<const uint32_t*>(p.packed), p.scale, reinterpret_cast<uint4*>(p.out),
      static_cast<uint32_t>(n_words));
  QF_KERNEL_CHECK();
}

}  // namespace qf::kernels
