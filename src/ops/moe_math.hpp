// The scalar math of the MoE sub-layer: router scores and the clamped SwiGLU (transformers
// DeepseekV4SparseMoeBlock). Owns only those formulas; routing and experts are model/forward_moe.
#pragma once
#include <cstdint>

namespace qf::ops {

// kSoftmax: a valid config.json value (DeepSeek model.py Gate normalises over the experts) that
// the reference forward and the kernels do not implement; router_score refuses it.
enum class ScoringFunc { kSqrtSoftplus, kSigmoid, kSoftmax };

// Router score of one logit: sqrt(softplus(x)) (torch softplus: x above 20 passes through)
// or sigmoid(x). Throws qf::Error for kSoftmax (not a per-logit function).
float router_score(ScoringFunc func, float logit);

// out[i] = silu(min(gate[i], limit)) * clamp(up[i], -limit, limit), in place into gate.
void swiglu_clamped(float* gate, const float* up, int64_t n_elems, float limit);

}  // namespace qf::ops
