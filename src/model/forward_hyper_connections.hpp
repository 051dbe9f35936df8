// Manifold-constrained hyper-connections (mHC) of the reference forward: the per-site
// pre / post / comb mixing (transformers DeepseekV4HyperConnection, Sinkhorn-Knopp projection)
// and the final hyper-head collapse. Does not own: the sub-layers between pre and post.
#pragma once
#include <cstdint>
#include <vector>

#include "model/forward_config.hpp"
#include "model/layer_weights.hpp"

namespace qf::model {

// Per-token mixing weights of one mHC site; hc = hc_mult.
struct HcMix {
  int64_t n_tokens = 0, hc = 0;
  std::vector<float> pre;   // [n_tokens, hc]      sigmoid(.) + hc_eps: stream collapse weights
  std::vector<float> post;  // [n_tokens, hc]      2 * sigmoid(.): block-output placement
  std::vector<float> comb;  // [n_tokens, hc, hc]  Sinkhorn-projected residual mixer comb[j][k]
};

// comb from its logits [hc, hc] (row-major, comb_logits[i][j]):
//   comb = softmax over j + eps; comb /= (column sums + eps);
//   repeat iters-1 times: comb /= (row sums + eps); comb /= (column sums + eps).
// (transformers order: one column normalisation first, then iters-1 row/column pairs.)
void sinkhorn_comb(const float* logits, int64_t hc, int64_t iters, float eps, float* comb);

// hc "pre" of one site: from hidden [n_tokens, hc, dim] computes the mix and the collapsed
// sub-layer input collapsed[t] = sum_h pre[t,h] * hidden[t,h,:]  ([n_tokens, dim]).
void hc_pre(const ForwardConfig& config, const HyperConnectionWeights& w, const float* hidden,
            int64_t n_tokens, HcMix* mix, std::vector<float>* collapsed);

// hc "post": hidden[t,k,:] = post[t,k] * block_out[t,:] + sum_j comb[t,j,k] * hidden[t,j,:]
// (comb consumed transposed, as transformers does). In place on hidden [n_tokens, hc, dim].
void hc_post(const HcMix& mix, const float* block_out, int64_t dim, float* hidden);

// Final hyper-head: out[t] = sum_h (sigmoid(mixes*scale + base) + hc_eps)[h] * hidden[t,h,:]
// with mixes = rms(hidden[t] flattened) * hc_fn^T. Returns [n_tokens, dim].
std::vector<float> hc_head_collapse(const ForwardConfig& config, const GlobalWeights& g,
                                    const float* hidden, int64_t n_tokens);

}  // namespace qf::model
