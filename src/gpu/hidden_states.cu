// DeviceHiddenStates (hidden_states.hpp).
#include <utility>

#include "core/check.hpp"
#include "core/log.hpp"
#include "gpu/hidden_states.hpp"

namespace qf::gpu {

DeviceHiddenStates::DeviceHiddenStates(std::vector<float> hidden, int64_t token_floats)
    : token_floats_(token_floats) {
  size_t free_bytes = 0, total_bytes = 0;
  QF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  const uint64_t hidden_bytes = hidden.size() * sizeof(float);
  resident_ = hidden_bytes <= total_bytes / 4;
  if (hidden.empty()) return;
  if (resident_) {
    resident_rows_.grow(hidden.size());
    QF_CUDA_CHECK(
        cudaMemcpy(resident_rows_.get(), hidden.data(), hidden_bytes, cudaMemcpyHostToDevice),
        "hidden states upload (", hidden_bytes, "bytes)");
  } else {
    host_rows_ = std::move(hidden);
    log_info("calibrate (cuda): hidden states (", hidden_bytes >> 20,
             " MiB) stay on the host; each batch is copied to the GPU");
  }
}

float* DeviceHiddenStates::batch_in(int64_t first, int64_t n_tokens, cudaStream_t stream) {
  if (resident_) return resident_rows_.get() + first * token_floats_;
  batch_rows_.grow(n_tokens * token_floats_);
  QF_CUDA_CHECK(cudaMemcpyAsync(batch_rows_.get(), host_rows_.data() + first * token_floats_,
                                n_tokens * token_floats_ * 4, cudaMemcpyHostToDevice, stream),
                "hidden batch upload");
  return batch_rows_.get();
}

void DeviceHiddenStates::batch_out(int64_t first, int64_t n_tokens, cudaStream_t stream) {
  if (resident_) return;
  QF_CUDA_CHECK(cudaMemcpyAsync(host_rows_.data() + first * token_floats_, batch_rows_.get(),
                                n_tokens * token_floats_ * 4, cudaMemcpyDeviceToHost, stream),
                "hidden batch download");
}

}  // namespace qf::gpu
