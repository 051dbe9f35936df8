// Attention sub-layer of the reference forward (transformers DeepseekV4Attention, eager):
// low-rank q, one shared K=V head, partial interleaved RoPE, sliding window + compressed
// entries, per-head sinks, grouped low-rank output projection. Does not own: the compressor
// and indexer (forward_compressor) or the norms / hyper-connections around the sub-layer.
#pragma once
#include <cstdint>
#include <string>
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

// How many separate inputs a linear's observe() rows interleave: o_groups for the grouped
// `layers.L.attn.wo_a` (row = token * o_groups + g holds group g's slice, projected by weight
// rows [g * o_lora_rank, (g + 1) * o_lora_rank)), 1 for every other linear.
int linear_input_groups(const ModelConfig& config, const std::string& linear_name);

}  // namespace qf::model
