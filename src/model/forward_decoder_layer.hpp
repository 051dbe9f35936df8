// One DeepSeek V4 decoder layer of the reference forward (transformers DeepseekV4DecoderLayer):
// hc pre -> attn_norm -> attention -> hc post -> hc pre -> ffn_norm -> MoE -> hc post.
// Does not own: the sub-layers themselves or the embedding / head (model_forward).
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.hpp"
#include "model/forward_config.hpp"
#include "model/layer_weights.hpp"
#include "model/linear_observer.hpp"

namespace qf::model {

// hidden: in/out [n_seqs * seq_len, hc_mult, hidden_size], sequence-major, positions
// 0..seq_len-1 in each sequence (causal prefill, no padding, no cache). token_ids: one per token
// (used by hash-routed layers). observer may be null.
void decoder_layer_forward(const ForwardConfig& config, int layer, const LayerWeights& weights,
                           const std::vector<int64_t>& token_ids, int n_seqs, int seq_len,
                           std::vector<float>& hidden, LinearInputObserver* observer);

// Same, for callers holding the project-wide ModelConfig (converted on every call; callers in a
// loop should convert once with forward_config_from).
void decoder_layer_forward(const ModelConfig& config, int layer, const LayerWeights& weights,
                           const std::vector<int64_t>& token_ids, int n_seqs, int seq_len,
                           std::vector<float>& hidden, LinearInputObserver* observer);

// ForwardConfig of a ModelConfig (parsed from its to_json(), so code-built configs work too).
ForwardConfig forward_config_from(const ModelConfig& config);

}  // namespace qf::model
