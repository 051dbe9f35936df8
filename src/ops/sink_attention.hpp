// Softmax attention with per-head sinks over a sliding window plus compressed entries, for one
// sequence (transformers DeepseekV4Attention's eager core, FP32). Owns only that arithmetic:
// projections, RoPE and which entries are visible are decided by the caller.
#pragma once
#include <cstdint>
#include <vector>

namespace qf::ops {

// Softmax attention with a sink for one sequence, all heads:
//   q [seq_len, n_heads, head_dim], kv [seq_len, head_dim] (K = V),
//   compressed [n_entries, head_dim] with visible [seq_len, n_entries] (may be null if
//   n_entries == 0), sinks [n_heads].
// Query t sees the keys j with t - window < j <= t and the compressed entries marked visible;
// logits = (q . k) * scale; p = softmax over [logits..., sinks[h]], the sink column dropped.
// Returns out [seq_len, n_heads, head_dim] = sum_j p_j * v_j.
std::vector<float> sink_attention(const float* q, const float* kv, int64_t seq_len, int64_t n_heads,
                                  int64_t head_dim, const float* sinks, int64_t window,
                                  const float* compressed, int64_t n_entries,
                                  const uint8_t* visible, float scale);

}  // namespace qf::ops
