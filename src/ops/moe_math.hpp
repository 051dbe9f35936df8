// The scalar math of the MoE sub-layer: router scores, one token's top-k selection and weights,
// and the clamped SwiGLU (transformers DeepseekV4SparseMoeBlock). Owns only those formulas, the
// one statement of them that model::route_tokens and kernels::route_ref share; the router GEMM,
// hash tables, error policy and experts are model/forward_moe's and the kernels'.
#pragma once
#include <cstdint>
#include <vector>

namespace qf::ops {

// kSoftmax: a valid config.json value (DeepSeek model.py Gate normalises over the experts) that
// the reference forward and the kernels do not implement; router_score refuses it.
enum class ScoringFunc { kSqrtSoftplus, kSigmoid, kSoftmax };

// Router score of one logit: sqrt(softplus(x)) (torch softplus: x above 20 passes through)
// or sigmoid(x). Throws qf::Error for kSoftmax (not a per-logit function).
float router_score(ScoringFunc func, float logit);

// One token's routing after the gate GEMM, with scratch kept between tokens. Call score() for the
// token, then select_top_k() (top-k layers; hash layers take their table's experts instead), then
// weigh() with the selected experts.
class TokenRouter {
 public:
  TokenRouter(ScoringFunc func, int64_t n_experts, int64_t top_k, float routed_scaling);
  // score[e] = router_score(func, logits[e]) for this token's logits [n_experts].
  void score(const float* logits);
  // experts[0, top_k) = the top_k experts by score + bias[e] (bias null: score alone; the bias
  // only selects), highest first, ties to the lower expert id.
  void select_top_k(const float* bias, int32_t* experts);
  // weights[s] = score[experts[s]] / (sum of the top_k selected scores + 1e-20) *
  // routed_scaling (always normalised: transformers ignores norm_topk_prob). experts must lie in
  // [0, n_experts).
  void weigh(const int32_t* experts, float* weights) const;

 private:
  ScoringFunc func_;
  int64_t n_experts_, top_k_;
  float routed_scaling_;
  std::vector<float> score_, biased_;
  std::vector<int32_t> order_;
};

// out[i] = silu(min(gate[i], limit)) * clamp(up[i], -limit, limit), in place into gate.
void swiglu_clamped(float* gate, const float* up, int64_t n_elems, float limit);

}  // namespace qf::ops
