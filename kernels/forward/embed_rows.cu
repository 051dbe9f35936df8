// CUDA kernel and launcher of embed_rows.cuh: a grid-stride loop over output elements
// (memory-bound, once per run: 4.3 GB at benchmark 1's sizes, a few milliseconds).
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/forward/embed_rows.cuh"
#include "kernels/launch_util.cuh"
#include "numerics/bf16.hpp"

namespace qf::kernels {
namespace {

constexpr int kEmbedThreads = 256;

__global__ void embed_rows_kernel(EmbedRowsParams p) {
  const int64_t row_floats = int64_t{p.copies} * p.dim;
  const int64_t n = p.n_tokens * row_floats;
  for (int64_t i = blockIdx.x * int64_t{kEmbedThreads} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * kEmbedThreads) {
    const int64_t t = i / row_floats, col = (i - t * row_floats) % p.dim;
    p.out[i] = numerics::bf16_to_float(p.table_bf16[p.token_ids[t] * p.dim + col]);
  }
}

}  // namespace

void launch_embed_rows(const EmbedRowsParams& p, cudaStream_t stream) {
  QF_NVTX_RANGE("launch_embed_rows");
  QF_CHECK(p.vocab >= 0 && p.dim >= 0 && p.n_tokens >= 0 && p.copies >= 1, "embed_rows shape",
           p.vocab, "x", p.dim, ",", p.n_tokens, "tokens x", p.copies);
  if (p.n_tokens == 0 || p.dim == 0) return;
  QF_CHECK(p.table_bf16 && p.token_ids && p.out, "embed_rows needs table, ids and out");
  const int64_t n_blocks = std::min<int64_t>(ceil_div(p.n_tokens * p.copies * p.dim, kEmbedThreads),
                                             int64_t{32} * device_sm_count());
  embed_rows_kernel<<<grid_x(n_blocks, "embed_rows"), kEmbedThreads, 0, stream>>>(p);
  QF_KERNEL_CHECK();
}

}  // namespace qf::kernels
