// Manifold-constrained hyper-connections (mHC) of the reference forward: the per-site
// pre / post / comb mixing (transformers DeepseekV4HyperConnection, Sinkhorn-Knopp projection)
// and the final hyper-head collapse. Does not own: the sub-layers between pre and post.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.hpp"
#include "model/layer_weights.hpp"
#include "ops/hyper_connection_mix.hpp"

namespace qf::model {

// hc "pre" of one site: from hidden [n_tokens, hc, dim] computes the mix and the collapsed
// sub-layer input collapsed[t] = sum_h pre[t,h] * hidden[t,h,:]  ([n_tokens, dim]).
void hc_pre(const ModelConfig& config, const HyperConnectionWeights& w, const float* hidden,
            int64_t n_tokens, ops::HcMix* mix, std::vector<float>* collapsed);

// Final hyper-head: out[t] = sum_h (sigmoid(mixes*scale + base) + hc_eps)[h] * hidden[t,h,:]
// with mixes = rms(hidden[t] flattened) * hc_fn^T. Returns [n_tokens, dim].
std::vector<float> hc_head_collapse(const ModelConfig& config, const GlobalWeights& g,
                                    const float* hidden, int64_t n_tokens);

}  // namespace qf::model
