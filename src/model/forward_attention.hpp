// Attention sub-layer of the reference forward (transformers DeepseekV4Attention, eager):
// low-rank q, one shared K=V head, partial interleaved RoPE, sliding window + compressed
// entries, per-head sinks, grouped low-rank output projection. Does not own: the compressor
// and indexer (forward_compressor) or the norms / hyper-connections around the sub-layer.
#pragma once
#include <cstdint>
#include <vector>

#include "model/forward_config.hpp"
#include "model/layer_weights.hpp"
#include "model/linear_observer.hpp"

namespace qf::model {

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

// One attention sub-layer: x [n_seqs * seq_len, hidden] (after attn_norm), positions
// 0..seq_len-1 in every sequence. Returns [n_seqs * seq_len, hidden]. Observes
// layers.<layer>.attn.{wq_a, wq_b, wkv, wo_a, wo_b} plus the compressor / indexer linears.
std::vector<float> attention_forward(const ForwardConfig& config, int layer,
                                     const AttentionWeights& w, const float* x, int n_seqs,
                                     int64_t seq_len, LinearInputObserver* observer);

}  // namespace qf::model
