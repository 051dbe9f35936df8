// Model ends and the whole-model loop of the reference forward: token embedding into hc_mult
// streams, hyper-head + final norm, head logits (transformers DeepseekV4Model /
// DeepseekV4ForCausalLM). Does not own: the decoder layer (forward_decoder_layer).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/config.hpp"
#include "model/layer_weights.hpp"
#include "model/linear_observer.hpp"

namespace qf::model {

// Throws naming the first id outside [0, vocab).
void check_token_ids(const std::vector<int64_t>& token_ids, int64_t vocab);

// [n_tokens, hc_mult, hidden]: every stream starts as the token's embedding row.
std::vector<float> embed_tokens(const ModelConfig& config, const GlobalWeights& g,
                                const std::vector<int64_t>& token_ids);

// norm(hc_head(hidden)): the model's last hidden state [n_tokens, hidden].
std::vector<float> final_hidden(const ModelConfig& config, const GlobalWeights& g,
                                const std::vector<float>& hidden);

// head(final_hidden) [n_tokens, vocab]; observes "head" with the final hidden state.
std::vector<float> final_logits(const ModelConfig& config, const GlobalWeights& g,
                                const std::vector<float>& final_hidden_states,
                                LinearInputObserver* observer);

struct ModelOutput {
  std::vector<float> hidden;  // [n_tokens, hidden]: final_hidden
  std::vector<float> logits;  // [n_tokens, vocab]
};

// The whole model, one layer at a time: layer_source(l) supplies layer l's weights (loaded on
// demand, dropped after use). token_ids: n_seqs sequences of seq_len, sequence-major.
ModelOutput model_forward(const ModelConfig& config, const GlobalWeights& g,
                          const std::function<LayerWeights(int)>& layer_source,
                          const std::vector<int64_t>& token_ids, int n_seqs, int seq_len,
                          LinearInputObserver* observer);

}  // namespace qf::model
