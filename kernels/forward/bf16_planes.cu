// CUDA kernel and launcher of bf16_planes.cuh: a grid-stride loop over elements (the op is
// memory-bound and tiny next to the GEMMs it feeds).
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/forward/bf16_planes.cuh"
#include "kernels/launch_util.cuh"
#include "numerics/bf16.hpp"

namespace qf::kernels {
namespace {

constexpr int kPlaneThreads = 256;

__global__ void bf16_planes_kernel(Bf16PlanesParams p) {
  const int64_t n_rows = p.row_count != nullptr ? min(p.n_rows, int64_t{*p.row_count}) : p.n_rows;
  const int64_t n = n_rows * p.n_cols;
  for (int64_t i = blockIdx.x * int64_t{kPlaneThreads} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * kPlaneThreads) {
    const int64_t r = i / p.n_cols, c = i - r * p.n_cols;
    const int64_t src = p.row_index != nullptr ? p.row_index[r] : r;
    const numerics::Bf16Planes planes = numerics::float_to_bf16_planes(p.x[src * p.n_cols + c]);
    p.mid[i] = planes.mid;
    p.lo[i] = planes.lo;
  }
}

}  // namespace

void launch_bf16_planes(const Bf16PlanesParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_bf16_planes");
  QF_CHECK(p.n_rows >= 0 && p.n_cols >= 0, "bf16_planes shape", p.n_rows, "x", p.n_cols);
  if (p.n_rows == 0 || p.n_cols == 0) return;
  QF_CHECK(p.x != nullptr && p.mid != nullptr && p.lo != nullptr, "bf16_planes needs x, mid, lo");
  const int64_t n_blocks = std::min<int64_t>(ceil_div(p.n_rows * p.n_cols, kPlaneThreads),
                                             int64_t{32} * device_sm_count());
  bf16_planes_kernel<<<grid_x(n_blocks, "bf16_planes"), kPlaneThreads, 0, stream>>>(p);
  QF_KERNEL_CHECK();
}

}  // namespace qf::kernels
