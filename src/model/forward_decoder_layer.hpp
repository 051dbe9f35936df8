// One DeepSeek V4 decoder layer of the reference forward (transformers DeepseekV4DecoderLayer):
// hc pre -> attn_norm -> attention -> hc post -> hc pre -> ffn_norm -> MoE -> hc post.
// Does not own: the sub-layers themselves or the embedding / head (model_forward).
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.hpp"
#include "model/layer_weights.hpp"
#include "model/linear_observer.hpp"

namespace qf::model {

// hidden: in/out [n_seqs * seq_len, hc_mult, hidden_size], sequence-major, positions
// 0..seq_len-1 in each sequence (causal prefill, no padding, no cache). token_ids: one per token
// (used by hash-routed layers). observer may be null.
// bf16_linear_inputs: round every linear's input to BF16 before its product (the router's and the
// mHC mixes' excepted), as the CUDA backend does; the reference for comparing the two. An
// argument, not a ModelConfig field: config.json describes the checkpoint, this is a choice of
// the run (quantize --cpu-bf16-inputs), and it would otherwise ride along in every copy.
void decoder_layer_forward(const ModelConfig& config, int layer, const LayerWeights& weights,
                           const std::vector<int64_t>& token_ids, int n_seqs, int seq_len,
                           std::vector<float>& hidden, LinearInputObserver* observer,
                           bool bf16_linear_inputs = false);

}  // namespace qf::model
