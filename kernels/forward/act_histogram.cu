// CUDA kernel and launcher of act_histogram.cuh. Each block takes a contiguous range of logical
// rows, one warp per row at a time (coalesced over columns), counting into a per-warp private
// shared-memory histogram (32-bit: a block counts at most max(2^16, n_cols) values); when the
// range crosses into another segment, and at its end, the block adds its counts to the slot
// with one 64-bit global atomic per non-empty bin.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "kernels/forward/act_histogram.cuh"
#include "kernels/launch_util.cuh"

namespace qf::kernels {
namespace {

constexpr int kHistThreads = 256;
constexpr int kHistWarps = kHistThreads / 32;
constexpr int kBins = numerics::kActHistBins;
// Values per block between flushes: amortises a flush's kBins global atomics, keeps the 32-bit
// shared counters far from wrapping, and still gives thousands of blocks on a V4 activation.
constexpr int64_t kHistValuesPerBlock = int64_t{1} << 16;
static_assert(sizeof(unsigned long long) == sizeof(int64_t), "64-bit counters");

__global__ void act_hist_kernel(ActHistParams p, int64_t rows_per_block) {
  __shared__ uint32_t s_hist[kHistWarps * kBins];  // one private histogram per warp
  for (int i = threadIdx.x; i < kHistWarps * kBins; i += kHistThreads) s_hist[i] = 0;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  int64_t end = min(p.n_rows, first + rows_per_block);
  int64_t seg = 0;
  if (p.segment_offsets != nullptr) {
    end = min(end, static_cast<int64_t>(p.segment_offsets[p.n_segments]));
    // Segment of row `first`: the largest s with offsets[s] <= first (empty ones share offsets).
    int64_t lo = 0, hi = p.n_segments - 1;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (p.segment_offsets[mid] <= first) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    seg = lo;
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint32_t* mine = s_hist + warp * kBins;
  auto* hist = reinterpret_cast<unsigned long long*>(p.hist);
  // Block-uniform loop: every thread sees the same row, stop and segment.
  for (int64_t row = first; row < end;) {
    int64_t stop = end;
    if (p.segment_offsets != nullptr) {
      while (seg + 1 < p.n_segments && p.segment_offsets[seg + 1] <= row) ++seg;
      stop = min(stop, static_cast<int64_t>(p.segment_offsets[seg + 1]));
    }
    for (int64_t r = row + warp; r < stop; r += kHistWarps) {
      const int64_t src = p.row_index != nullptr ? p.row_index[r] : r;
      const float* xr = p.x + src * p.n_cols;
      for (int64_t c = lane; c < p.n_cols; c += 32) {
        atomicAdd(mine + numerics::act_hist_bin(__ldg(xr + c)), 1u);
      }
    }
    __syncthreads();
    for (int b = threadIdx.x; b < kBins; b += kHistThreads) {
      uint32_t n = 0;
      for (int w = 0; w < kHistWarps; ++w) {
        n += s_hist[w * kBins + b];
        s_hist[w * kBins + b] = 0;
      }
      if (n != 0) atomicAdd(hist + seg * kBins + b, static_cast<unsigned long long>(n));
    }
    __syncthreads();
    row = stop;
  }
}

}  // namespace

void launch_act_hist(const ActHistParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_act_hist");
  QF_CHECK(p.n_rows >= 0 && p.n_cols >= 0 && p.n_cols <= INT_MAX, "act_hist shape", p.n_rows, "x",
           p.n_cols);
  if (p.n_rows == 0 || p.n_cols == 0) return;
  QF_CHECK(p.x != nullptr && p.hist != nullptr, "act_hist needs x and hist");
  QF_CHECK(p.segment_offsets == nullptr || (p.n_segments > 0 && p.n_segments <= INT_MAX),
           "act_hist: segment_offsets with", p.n_segments, "segments");
  const int64_t rows_per_block = std::max<int64_t>(1, kHistValuesPerBlock / p.n_cols);
  const unsigned grid = grid_x(ceil_div(p.n_rows, rows_per_block), "act_hist");
  act_hist_kernel<<<grid, kHistThreads, 0, stream>>>(p, rows_per_block);
  QF_KERNEL_CHECK();
}

}  // namespace qf::kernels
