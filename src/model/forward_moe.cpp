// Router, experts and shared expert of DeepseekV4SparseMoeBlock (transformers 5.17), FP32.
// Expert outputs are scaled by their routing weight after w2 and accumulated per token in
// ascending expert order, as the eager DeepseekV4Experts.forward index_add_ does.
// Divergences from DeepSeek's reference inference/model.py (transformers is followed):
//  - the reference multiplies the routing weight into the SwiGLU output BEFORE w2
//    (Expert.forward: x = weights * x; w2(x)), so its w2 input amax differs by that factor;
//  - the reference normalises the top-k weights without the +1e-20 (same values otherwise);
//  - both ignore norm_topk_prob (always normalise) and both clamp the shared expert too.
#include "model/forward_moe.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "core/check.hpp"
#include "model/forward_linear.hpp"
#include "ops/moe_math.hpp"

namespace qf::model {

Routing route_tokens(const ModelConfig& c, int layer, const MoeWeights& w, const float* x,
                     int64_t n_tokens, const std::vector<int64_t>& token_ids,
                     LinearInputObserver* observer) {
  const std::string name = "layers." + std::to_string(layer) + ".ffn.gate";
  const int64_t n_exp = c.n_routed_experts, k = c.num_experts_per_tok;
  const bool hash = c.is_hash_layer(layer);
  if (hash) {
    QF_CHECK(static_cast<int64_t>(token_ids.size()) == n_tokens, "layer", layer,
             "hash routing needs one token id per token:", token_ids.size(), "ids for", n_tokens,
             "tokens");
  }
  const std::vector<float> logits = linear_forward(name, x, n_tokens, w.gate, observer);
  Routing r;
  r.n_tokens = n_tokens;
  r.top_k = k;
  r.experts.resize(n_tokens * k);
  r.weights.resize(n_tokens * k);
  ops::TokenRouter router(c.scoring_func, n_exp, k, static_cast<float>(c.routed_scaling_factor));
  for (int64_t t = 0; t < n_tokens; ++t) {
    router.score(logits.data() + t * n_exp);
    int32_t* sel = r.experts.data() + t * k;
    if (hash) {
      const int64_t id = token_ids[t];
      QF_CHECK(id >= 0 && id < c.vocab_size, "token id", id, "outside the vocabulary");
      for (int64_t s = 0; s < k; ++s) sel[s] = w.tid2eid[id * k + s];
    } else {
      router.select_top_k(w.gate_bias.data(), sel);
    }
    router.weigh(sel, r.weights.data() + t * k);
  }
  return r;
}

std::vector<float> expert_forward(const std::string& name, const ExpertWeights& e, const float* x,
                                  int64_t n_rows, float limit, LinearInputObserver* observer,
                                  bool bf16_inputs) {
  std::vector<float> gate = linear_forward(name + ".w1", x, n_rows, e.w1, observer, bf16_inputs);
  const std::vector<float> up =
      linear_forward(name + ".w3", x, n_rows, e.w3, observer, bf16_inputs);
  ops::swiglu_clamped(gate.data(), up.data(), static_cast<int64_t>(gate.size()), limit);
  return linear_forward(name + ".w2", gate.data(), n_rows, e.w2, observer, bf16_inputs);
}

std::vector<float> moe_forward(const ModelConfig& c, int layer, const MoeWeights& w, const float* x,
                               int64_t n_tokens, const std::vector<int64_t>& token_ids,
                               LinearInputObserver* observer, bool bf16_linear_inputs) {
  const int64_t dim = c.hidden_size;
  const float limit = static_cast<float>(c.swiglu_limit);
  const std::string p = "layers." + std::to_string(layer) + ".ffn.";
  const Routing r = route_tokens(c, layer, w, x, n_tokens, token_ids, observer);
  std::vector<float> out(n_tokens * dim, 0.0f);
  std::vector<int64_t> rows_token, rows_slot;
  std::vector<float> rows;
  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    // Assignments of expert e in torch.where(mask[e]) order: slot-major, then token.
    rows_token.clear();
    rows_slot.clear();
    for (int64_t s = 0; s < r.top_k; ++s) {
      for (int64_t t = 0; t < n_tokens; ++t) {
        if (r.experts[t * r.top_k + s] == e) {
          rows_token.push_back(t);
          rows_slot.push_back(s);
        }
      }
    }
    const auto n_rows = static_cast<int64_t>(rows_token.size());
    if (n_rows == 0) continue;
    if (observer != nullptr) observer->observe_expert_tokens(layer, static_cast<int>(e), n_rows);
    rows.resize(n_rows * dim);
    for (int64_t i = 0; i < n_rows; ++i) {
      std::copy(x + rows_token[i] * dim, x + (rows_token[i] + 1) * dim, rows.begin() + i * dim);
    }
    const std::vector<float> y =
        expert_forward(p + "experts." + std::to_string(e), w.expert(e), rows.data(), n_rows, limit,
                       observer, bf16_linear_inputs);
    for (int64_t i = 0; i < n_rows; ++i) {
      const float weight = r.weights[rows_token[i] * r.top_k + rows_slot[i]];
      float* o = out.data() + rows_token[i] * dim;
      for (int64_t d = 0; d < dim; ++d) o[d] += y[i * dim + d] * weight;
    }
  }
  const std::vector<float> shared = expert_forward(p + "shared_experts", w.shared, x, n_tokens,
                                                   limit, observer, bf16_linear_inputs);
  for (int64_t i = 0; i < n_tokens * dim; ++i) out[i] += shared[i];
  return out;
}

}  // namespace qf::model
