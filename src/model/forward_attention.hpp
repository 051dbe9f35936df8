// Attention sub-layer of the reference forward (transformers DeepseekV4Attention, eager):
// low-rank q, one shared K=V head, partial interleaved RoPE, sliding window + compressed
// entries, per-head sinks, grouped low-rank output projection. Does not own: the compressor
// and indexer (forward_compressor) or the norms / hyper-connections around the sub-layer.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.hpp"
#include "model/layer_weights.hpp"
#include "model/linear_observer.hpp"

namespace qf::model {

// One attention sub-layer: x [n_seqs * seq_len, hidden] (after attn_norm), positions
// 0..seq_len-1 in every sequence. Returns [n_seqs * seq_len, hidden]. Observes
// layers.<layer>.attn.{wq_a, wq_b, wkv, wo_a, wo_b} plus the compressor / indexer linears.
std::vector<float> attention_forward(const ModelConfig& config, int layer,
                                     const AttentionWeights& w, const float* x, int n_seqs,
                                     int64_t seq_len, LinearInputObserver* observer,
                                     bool bf16_linear_inputs = false);

}  // namespace qf::model
