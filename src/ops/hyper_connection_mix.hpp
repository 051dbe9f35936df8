// The mixing arithmetic of manifold-constrained hyper-connections (transformers
// DeepseekV4HyperConnection): the per-token mix, the Sinkhorn-Knopp projection of its residual
// mixer and the "post" placement. Owns only that arithmetic; where the mixes come from (the
// site's weights) is model/forward_hyper_connections.
#pragma once
#include <cstdint>
#include <vector>

namespace qf::ops {

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

// hc "post": hidden[t,k,:] = post[t,k] * block_out[t,:] + sum_j comb[t,j,k] * hidden[t,j,:]
// (comb consumed transposed, as transformers does). In place on hidden [n_tokens, hc, dim].
void hc_post(const HcMix& mix, const float* block_out, int64_t dim, float* hidden);

}  // namespace qf::ops
