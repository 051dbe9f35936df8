// Times the attention kernels on V4-Flash calibration shapes (4 x 4096 tokens, 64 heads x 512,
// window 128; CSA 1024 entries about half visible; HCA 32 entries; indexer 64 x 128 heads, top
// 512 of 1024) and prints ms and GFLOP/s (useful multiply-adds x 2: QK and PV over the visible
// keys; indexer scores over the causal pairs). Usage: bench_attention [iterations=10]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "bench/bench_util.cuh"
#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "kernels/forward/attention.cuh"

using namespace qf;
using namespace qf::kernels;

namespace {

using bench::hash32;

__global__ void fill_f32_kernel(float* p, int64_t n, uint32_t seed, float amp) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    p[i] = amp * ((hash32(i, seed) & 0xFFFF) * (2.0f / 65536.0f) - 1.0f);
  }
}

// CSA-like: entry e visible to query t iff e < (t + 1) / rate and a coin says so (~half).
__global__ void fill_visible_kernel(uint8_t* v, int64_t n_tokens, int64_t seq_len,
                                    int64_t n_entries, int64_t rate, bool coin) {
  const int64_t n = n_tokens * n_entries;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t e = i % n_entries, t = (i / n_entries) % seq_len;
    v[i] = e < (t + 1) / rate && (!coin || (hash32(i, 77) & 1));
  }
}

void fill(float* p, int64_t n, uint32_t seed, float amp) {
  fill_f32_kernel<<<1024, 256>>>(p, n, seed, amp);
  QF_KERNEL_CHECK();
}

constexpr int64_t kSeqs = 4, kSeqLen = 4096, kTokens = kSeqs * kSeqLen;

void print_row(const char* name, double seconds, double flop) {
  std::printf("%-44s %10.3f %12.1f\n", name, seconds * 1e3, flop / seconds * 1e-9);
}

void bench_sink(const char* name, int64_t n_entries, int64_t rate, bool coin, int iterations,
                cudaStream_t stream) {
  const int64_t H = 64, D = 512, W = 128;
  DeviceBuffer<float> q(kTokens * H * D), kv(kTokens * D), sinks(H), out(kTokens * H * D);
  DeviceBuffer<float> comp(std::max<int64_t>(kSeqs * n_entries * D, 1));
  DeviceBuffer<uint8_t> vis(std::max<int64_t>(kTokens * n_entries, 1));
  fill(q.get(), kTokens * H * D, 1, 1.0f);
  fill(kv.get(), kTokens * D, 2, 1.0f);
  fill(sinks.get(), H, 3, 1.0f);
  fill(comp.get(), kSeqs * n_entries * D, 4, 1.0f);
  int64_t n_visible = 0;  // visible entry keys summed over queries
  if (n_entries > 0) {
    fill_visible_kernel<<<1024, 256>>>(vis.get(), kTokens, kSeqLen, n_entries, rate, coin);
    QF_KERNEL_CHECK();
    std::vector<uint8_t> host(kTokens * n_entries);
    QF_CUDA_CHECK(cudaMemcpy(host.data(), vis.get(), host.size(), cudaMemcpyDeviceToHost), "copy");
    for (uint8_t v : host) n_visible += v;
  }
  QF_CUDA_CHECK(cudaDeviceSynchronize(), "fill");
  int64_t n_window = 0;  // window keys summed over queries
  for (int64_t t = 0; t < kSeqLen; ++t) n_window += std::min<int64_t>(W, t + 1);
  n_window *= kSeqs;

  SinkAttentionParams p;
  p.q = q.get();
  p.kv = kv.get();
  p.sinks = sinks.get();
  p.compressed = n_entries > 0 ? comp.get() : nullptr;
  p.visible = n_entries > 0 ? vis.get() : nullptr;
  p.n_seqs = kSeqs;
  p.seq_len = kSeqLen;
  p.n_heads = H;
  p.head_dim = D;
  p.window = W;
  p.n_entries = n_entries;
  p.scale = 1.0f / 22.627417f;
  p.out = out.get();
  const double s =
      bench::time_on_stream([&] { launch_sink_attention(p, stream); }, stream, iterations, 2);
  print_row(name, s, 4.0 * (n_window + n_visible) * H * D);
}

void bench_indexer(int iterations, cudaStream_t stream) {
  const int64_t H = 64, D = 128, rate = 4, E = kSeqLen / rate, top_k = 512;
  DeviceBuffer<float> q(kTokens * H * D), w(kTokens * H), keys(kSeqs * E * D);
  DeviceBuffer<uint8_t> vis(kTokens * E);
  fill(q.get(), kTokens * H * D, 5, 1.0f);
  fill(w.get(), kTokens * H, 6, 0.125f);
  fill(keys.get(), kSeqs * E * D, 7, 1.0f);
  IndexerSelectParams p;
  p.q = q.get();
  p.weights = w.get();
  p.keys = keys.get();
  p.n_seqs = kSeqs;
  p.seq_len = kSeqLen;
  p.n_entries = E;
  p.n_heads = H;
  p.head_dim = D;
  p.rate = rate;
  p.top_k = top_k;
  p.visible = vis.get();
  DeviceBuffer<uint8_t> ws(indexer_select_workspace_bytes(p));
  p.workspace = ws.get();
  QF_CUDA_CHECK(cudaDeviceSynchronize(), "fill");
  int64_t n_pairs = 0;  // causal (query, entry) pairs
  for (int64_t t = 0; t < kSeqLen; ++t) n_pairs += std::min<int64_t>(E, (t + 1) / rate);
  n_pairs *= kSeqs;
  const double s =
      bench::time_on_stream([&] { launch_indexer_select(p, stream); }, stream, iterations, 2);
  print_row("indexer select 64x128, 1024 entries, top 512", s, 2.0 * n_pairs * H * D);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int iterations = argc > 1 ? std::atoi(argv[1]) : 10;
    QF_CHECK(iterations > 0, "iterations must be positive, got", argv[1]);
    int device = 0;
    cudaDeviceProp prop{};
    QF_CUDA_CHECK(cudaGetDevice(&device), "device");
    QF_CUDA_CHECK(cudaGetDeviceProperties(&prop, device), "device properties");
    CudaStream stream;
    std::printf("# %s, %d SMs; %d iterations; %lld x %lld tokens; GFLOP/s counts useful work\n",
                prop.name, prop.multiProcessorCount, iterations, static_cast<long long>(kSeqs),
                static_cast<long long>(kSeqLen));
    std::printf("%-44s %10s %12s\n", "case", "ms", "GFLOP/s");
    bench_sink("sink attn 64x512, window 128", 0, 4, false, iterations, stream.get());
    bench_sink("sink attn + CSA 1024 entries (~half vis.)", 1024, 4, true, iterations,
               stream.get());
    bench_sink("sink attn + HCA 32 entries (causal)", 32, 128, false, iterations, stream.get());
    bench_indexer(iterations, stream.get());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
