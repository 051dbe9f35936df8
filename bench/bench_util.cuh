// Shared by the CUDA benches: a device-side hash for synthetic inputs and event timing.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>

#include "core/check.hpp"

namespace qf::bench {

// Cheap stateless hash of an element index (inputs that differ per element and per seed).
__device__ inline uint32_t hash32(uint64_t i, uint32_t seed) {
  uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ static_cast<uint32_t>(i >> 32) ^ seed;
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  return h ^ (h >> 16);
}

// Mean seconds per call of `op` (work queued on `stream`) over `iterations`, after `n_warmup`
// calls and a stream synchronize.
inline double time_on_stream(const std::function<void()>& op, cudaStream_t stream, int iterations,
                             int n_warmup) {
  struct Events {
    cudaEvent_t start = nullptr, stop = nullptr;
    Events() {
      QF_CUDA_CHECK(cudaEventCreate(&start), "event");
      QF_CUDA_CHECK(cudaEventCreate(&stop), "event");
    }
    ~Events() {
      cudaEventDestroy(start);
      cudaEventDestroy(stop);
    }
  } events;
  for (int i = 0; i < n_warmup; ++i) op();
  QF_CUDA_CHECK(cudaStreamSynchronize(stream), "warm-up");
  QF_CUDA_CHECK(cudaEventRecord(events.start, stream), "event record");
  for (int i = 0; i < iterations; ++i) op();
  QF_CUDA_CHECK(cudaEventRecord(events.stop, stream), "event record");
  QF_CUDA_CHECK(cudaEventSynchronize(events.stop), "event sync");
  float ms = 0;
  QF_CUDA_CHECK(cudaEventElapsedTime(&ms, events.start, events.stop), "event elapsed");
  return ms * 1e-3 / iterations;
}

}  // namespace qf::bench
