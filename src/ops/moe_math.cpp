// router_score, TokenRouter and swiglu_clamped.
#include "ops/moe_math.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/check.hpp"

namespace qf::ops {

float router_score(ScoringFunc func, float logit) {
  if (func == ScoringFunc::kSigmoid) return 1.0f / (1.0f + std::exp(-logit));
  if (func == ScoringFunc::kSoftmax) QF_FAIL("router scoring softmax is not implemented");
  const float softplus = logit > 20.0f ? logit : std::log1p(std::exp(logit));
  return std::sqrt(softplus);
}

TokenRouter::TokenRouter(ScoringFunc func, int64_t n_experts, int64_t top_k, float routed_scaling)
    : func_(func),
      n_experts_(n_experts),
      top_k_(top_k),
      routed_scaling_(routed_scaling),
      score_(static_cast<size_t>(n_experts)),
      biased_(static_cast<size_t>(n_experts)),
      order_(static_cast<size_t>(n_experts)) {}

void TokenRouter::score(const float* logits) {
  for (int64_t e = 0; e < n_experts_; ++e) score_[e] = router_score(func_, logits[e]);
}

void TokenRouter::select_top_k(const float* bias, int32_t* experts) {
  for (int64_t e = 0; e < n_experts_; ++e) {
    biased_[e] = score_[e] + (bias != nullptr ? bias[e] : 0.0f);
  }
  std::iota(order_.begin(), order_.end(), 0);
  std::partial_sort(order_.begin(), order_.begin() + top_k_, order_.end(),
                    [&](int32_t a, int32_t b) {
                      return biased_[a] > biased_[b] || (biased_[a] == biased_[b] && a < b);
                    });
  std::copy(order_.begin(), order_.begin() + top_k_, experts);
}

void TokenRouter::weigh(const int32_t* experts, float* weights) const {
  float sum = 0.0f;
  for (int64_t s = 0; s < top_k_; ++s) sum += score_[experts[s]];
  for (int64_t s = 0; s < top_k_; ++s) {
    weights[s] = score_[experts[s]] / (sum + 1e-20f) * routed_scaling_;
  }
}

void swiglu_clamped(float* gate, const float* up, int64_t n_elems, float limit) {
  for (int64_t i = 0; i < n_elems; ++i) {
    const float g = std::min(gate[i], limit);
    const float u = std::min(std::max(up[i], -limit), limit);
    gate[i] = g / (1.0f + std::exp(-g)) * u;
  }
}

}  // namespace qf::ops
