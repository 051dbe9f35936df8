// router_score and swiglu_clamped.
#include "ops/moe_math.hpp"

#include <algorithm>
#include <cmath>

#include "core/check.hpp"

namespace qf::ops {

float router_score(ScoringFunc func, float logit) {
  if (func == ScoringFunc::kSigmoid) return 1.0f / (1.0f + std::exp(-logit));
  if (func == ScoringFunc::kSoftmax) QF_FAIL("router scoring softmax is not implemented");
  const float softplus = logit > 20.0f ? logit : std::log1p(std::exp(logit));
  return std::sqrt(softplus);
}

void swiglu_clamped(float* gate, const float* up, int64_t n_elems, float limit) {
  for (int64_t i = 0; i < n_elems; ++i) {
    const float g = std::min(gate[i], limit);
    const float u = std::min(std::max(up[i], -limit), limit);
    gate[i] = g / (1.0f + std::exp(-g)) * u;
  }
}

}  // namespace qf::ops
