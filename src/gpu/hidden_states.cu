// DeviceHiddenStates (hidden_states.hpp).
#include <utility>

#include "core/check.hpp"
#include "core/log.hpp"
#include "gpu/hidden_states.hpp"
#include "kernels/forward/embed_rows.cuh"

namespace qf::gpu {

bool DeviceHiddenStates::fit_on_device(uint64_t n_bytes) {
  size_t free_bytes = 0, total_bytes = 0;
  QF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  return n_bytes <= total_bytes / 4;
}

DeviceHiddenStates::DeviceHiddenStates(std::vector<float> hidden, int64_t token_floats)
    : token_floats_(token_floats) {
  const uint64_t hidden_bytes = hidden.size() * sizeof(float);
  resident_ = fit_on_device(hidden_bytes);
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

DeviceHiddenStates::DeviceHiddenStates(const uint16_t* table_bf16, int64_t vocab, int64_t dim,
                                       int copies, const int64_t* token_ids, int64_t n_tokens)
    : token_floats_(int64_t{copies} * dim) {
  const uint64_t hidden_bytes = uint64_t(n_tokens) * token_floats_ * sizeof(float);
  QF_CHECK(fit_on_device(hidden_bytes), "hidden states of", hidden_bytes,
           "bytes do not fit on the GPU: embed them on the host");
  if (n_tokens == 0 || dim == 0) return;
  resident_rows_.grow(n_tokens * token_floats_);
  DeviceBuffer<uint16_t> table(vocab * dim);
  QF_CUDA_CHECK(
      cudaMemcpy(table.get(), table_bf16, uint64_t(vocab) * dim * 2, cudaMemcpyHostToDevice),
      "embedding table upload (", uint64_t(vocab) * dim * 2, "bytes)");
  kernels::EmbedRowsParams p;
  p.table_bf16 = table.get();
  p.vocab = vocab;
  p.dim = dim;
  p.token_ids = token_ids;
  p.n_tokens = n_tokens;
  p.copies = copies;
  p.out = resident_rows_.get();
  kernels::launch_embed_rows(p, nullptr);
  QF_CUDA_CHECK(cudaDeviceSynchronize(), "embedding", n_tokens, "tokens on the GPU");
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
