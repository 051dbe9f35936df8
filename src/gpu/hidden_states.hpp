// The calibration forward's hidden states on one GPU: resident in device memory when they take at
// most a quarter of it, else kept on the host with each batch copied in before its forward and
// out after it. Owns the device (and, when not resident, host) copies. Does not own the token
// order, the batching or the forward (the calibration engine's).
#pragma once
#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/cuda_raii.hpp"

namespace qf::gpu {

class DeviceHiddenStates {
 public:
  // hidden [n_tokens, token_floats] FP32, moved in; uploaded (synchronously) when resident.
  DeviceHiddenStates(std::vector<float> hidden, int64_t token_floats);
  // Embedded on the GPU (kernels/forward/embed_rows.cuh): row t is `copies` copies of the FP32
  // value of table_bf16[token_ids[t], :] (model::embed_tokens's states, bit for bit). table_bf16:
  // host [vocab, dim], uploaded, used and freed (synchronously); token_ids: device [n_tokens],
  // each in [0, vocab) (the caller checks them). Only where the states fit (fit_on_device).
  DeviceHiddenStates(const uint16_t* table_bf16, int64_t vocab, int64_t dim, int copies,
                     const int64_t* token_ids, int64_t n_tokens);
  // Whether hidden states of n_bytes stay resident: at most a quarter of the device's memory.
  static bool fit_on_device(uint64_t n_bytes);
  bool resident() const { return resident_; }
  // Device rows [first, first + n_tokens): in place when resident, else copied into the batch
  // buffer on `stream`.
  float* batch_in(int64_t first, int64_t n_tokens, cudaStream_t stream);
  // After the forward of the batch_in batch: copies it back to the host on `stream` (no-op when
  // resident).
  void batch_out(int64_t first, int64_t n_tokens, cudaStream_t stream);

 private:
  int64_t token_floats_;
  bool resident_ = true;
  DeviceBuffer<float> resident_rows_, batch_rows_;
  std::vector<float> host_rows_;
};

}  // namespace qf::gpu
#endif  // QF_HAVE_CUDA
