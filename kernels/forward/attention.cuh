// Attention kernels of the CUDA calibration forward: sink attention over the sliding window plus
// visible compressed entries, the compressor's gated pooling (+ RMSNorm + RoPE), the causal
// visibility of HCA entries and the Lightning Indexer's top-k selection (CSA). FP32 in and out.
// Declares params, CPU references (*_ref, always built, looping over sequences and calling
// ops::sink_attention / compress_sequence / indexer_select) and launchers (CUDA builds).
// Does not own: the projections around them (cuBLAS, src/gpu).
#pragma once
#include <cstddef>
#include <cstdint>

#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>

#endif

namespace qf::kernels {

// ---- sink attention (ops::sink_attention, per sequence) ---------------------------------------
// Query t of sequence b sees keys j of the same sequence with t - window < j <= t and the entries
// e of sequence b with visible[b*seq_len + t, e] != 0; logits = (q . k) * scale; softmax over
// [logits..., sinks[h]] with the sink column dropped; out = sum p_j v_j (K = V).
struct SinkAttentionParams {
  const float* q = nullptr;           // [n_seqs * seq_len, n_heads, head_dim]
  const float* kv = nullptr;          // [n_seqs * seq_len, head_dim]
  const float* sinks = nullptr;       // [n_heads]
  const float* compressed = nullptr;  // [n_seqs, n_entries, head_dim] or null (n_entries == 0)
  const uint8_t* visible = nullptr;   // [n_seqs * seq_len, n_entries] or null
  int64_t n_seqs = 0, seq_len = 0, n_heads = 0, head_dim = 0, window = 0, n_entries = 0;
  float scale = 1.0f;
  float* out = nullptr;  // [n_seqs * seq_len, n_heads, head_dim]
};

// ---- compressor pooling (ops::compress_sequence, per sequence) --------------------------------
// kv, gate [n_seqs * seq_len, width] with width = 2*head_dim (overlapping, CSA) or head_dim (HCA);
// out [n_seqs, seq_len / rate, head_dim]: pooled, RMSNorm(norm), RoPE at position entry * rate.
struct CompressPoolParams {
  const float* kv = nullptr;
  const float* gate = nullptr;
  const float* ape = nullptr;   // [rate, width]
  const float* norm = nullptr;  // [head_dim]
  int64_t n_seqs = 0, seq_len = 0, rate = 0, head_dim = 0;
  bool overlapping = false;
  const float* inv_freq = nullptr;  // [rope_dim / 2] (device for the launcher, host for the ref)
  int64_t rope_dim = 0;
  float attention_scaling = 1.0f;
  float eps = 1e-6f;
  float* out = nullptr;
};

// ---- HCA visibility: visible[b*seq_len + t, e] = (e < (t + 1) / rate)
// -----------------------------
struct CausalVisibilityParams {
  int64_t n_seqs = 0, seq_len = 0, n_entries = 0, rate = 0;
  uint8_t* visible = nullptr;  // [n_seqs * seq_len, n_entries]
};

// ---- Lightning Indexer top-k (ops::indexer_select, per sequence) ------------------------------
// score[t][e] = sum_h weights[t,h] * relu(q[t,h] . keys[e]) * head_dim^-0.5 over the causally
// complete entries e < (t + 1) / rate; visible = the best min(top_k, n_causal) of them, ties to
// the lower entry index. Outputs exactly what the reference selects for equal scores.
struct IndexerSelectParams {
  const float* q = nullptr;        // [n_seqs * seq_len, n_heads, head_dim] (roped)
  const float* weights = nullptr;  // [n_seqs * seq_len, n_heads] (already * n_heads^-0.5)
  const float* keys = nullptr;     // [n_seqs, n_entries, head_dim]
  int64_t n_seqs = 0, seq_len = 0, n_entries = 0, n_heads = 0, head_dim = 0, rate = 0, top_k = 0;
  uint8_t* visible = nullptr;  // [n_seqs * seq_len, n_entries]
  void* workspace = nullptr;   // device scratch of indexer_select_workspace_bytes(p)
};
size_t indexer_select_workspace_bytes(const IndexerSelectParams& p);

// ---- CPU references (attention_ref.cpp)
// -----------------------------------------------------------
void sink_attention_ref(const SinkAttentionParams& p);
void compress_pool_ref(const CompressPoolParams& p);
void causal_visibility_ref(const CausalVisibilityParams& p);
void indexer_select_ref(const IndexerSelectParams& p);

#ifdef QF_HAVE_CUDA
// ---- launchers: device pointers, validate (QF_CHECK), launch on stream; no alloc, no sync ----
void launch_sink_attention(const SinkAttentionParams& p, cudaStream_t stream);
void launch_compress_pool(const CompressPoolParams& p, cudaStream_t stream);
void launch_causal_visibility(const CausalVisibilityParams& p, cudaStream_t stream);
void launch_indexer_select(const IndexerSelectParams& p, cudaStream_t stream);
#endif

}  // namespace qf::kernels
