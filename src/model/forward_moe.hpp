// MoE sub-layer of the reference forward (transformers DeepseekV4SparseMoeBlock): router
// (sqrtsoftplus scores, e_score_correction bias for selection only, or hash table by token id),
// routed experts and the shared expert, SwiGLU with the swiglu_limit clamp.
// Does not own: ffn_norm / hyper-connections around the sub-layer.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.hpp"
#include "model/layer_weights.hpp"
#include "model/linear_observer.hpp"

namespace qf::model {

struct Routing {
  int64_t n_tokens = 0, top_k = 0;
  std::vector<int32_t> experts;  // [n_tokens, top_k]
  std::vector<float> weights;    // [n_tokens, top_k]: normalised, times routed_scaling_factor
};

// Selection: top-k of (score + gate_bias) for top-k layers (ties to the lower expert id), or
// tid2eid[token_id] for hash layers. Weights: score[e] / (sum of the k scores + 1e-20) *
// routed_scaling_factor (always normalised: transformers ignores norm_topk_prob).
// Observes layers.<layer>.ffn.gate with x.
Routing route_tokens(const ModelConfig& config, int layer, const MoeWeights& w, const float* x,
                     int64_t n_tokens, const std::vector<int64_t>& token_ids,
                     LinearInputObserver* observer);

// One expert MLP on x [n_rows, hidden]: w2(swiglu(w1 x, w3 x)); observes <name>.w1, .w3
// (same input) and .w2.
// bf16_inputs: see decoder_layer_forward's bf16_linear_inputs.
std::vector<float> expert_forward(const std::string& name, const ExpertWeights& e, const float* x,
                                  int64_t n_rows, float limit, LinearInputObserver* observer,
                                  bool bf16_inputs = false);

// The MoE sub-layer: x [n_tokens, hidden] (after ffn_norm) -> routed + shared [n_tokens, hidden].
// Experts run in ascending id; an expert with no routed token is neither run nor observed.
std::vector<float> moe_forward(const ModelConfig& config, int layer, const MoeWeights& w,
                               const float* x, int64_t n_tokens,
                               const std::vector<int64_t>& token_ids, LinearInputObserver* observer,
                               bool bf16_linear_inputs = false);

}  // namespace qf::model
