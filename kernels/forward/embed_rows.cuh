// The calibration's first hidden states from a BF16 embedding table: out[t, c, :] = the FP32
// value of table[token_ids[t], :] for c < copies (hc_mult; model::embed_tokens's layout). The
// CUDA engine embeds on the GPU so the host never builds (or uploads) the FP32 states. Owns that
// op; not the ids' validation (the caller checks them against the vocabulary first).
#pragma once
#include <cstdint>

#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qf::kernels {

struct EmbedRowsParams {
  const uint16_t* table_bf16 = nullptr;  // [vocab, dim]
  int64_t vocab = 0, dim = 0;
  const int64_t* token_ids = nullptr;  // [n_tokens], each in [0, vocab)
  int64_t n_tokens = 0;
  int copies = 1;        // rows written per token
  float* out = nullptr;  // [n_tokens, copies, dim]
};

void embed_rows_ref(const EmbedRowsParams& p);  // host pointers

#ifdef QF_HAVE_CUDA
// Device pointers. Validates the shape, launches on stream, no sync.
void launch_embed_rows(const EmbedRowsParams& p, cudaStream_t stream);
#endif

}  // namespace qf::kernels
