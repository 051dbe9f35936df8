// mHC mixing in FP32, following transformers 5.17 DeepseekV4HyperConnection.forward,
// DeepseekV4DecoderLayer.forward (post / comb application) and DeepseekV4HyperHead.forward.
#include "model/forward_hyper_connections.hpp"

#include <algorithm>
#include <cmath>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "model/forward_linear.hpp"
#include "ops/hyper_connection_mix.hpp"
#include "ops/rms_norm.hpp"

namespace qf::model {
namespace {

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// mixes[t] = rms_norm(hidden[t] as one hc*dim row, no weight) * fn^T.
std::vector<float> hc_mixes(const float* hidden, int64_t n_tokens, int64_t width,
                            const Tensor2D& fn, float eps) {
  QF_CHECK(fn.n_cols == width, "hc fn has", fn.n_cols, "columns, streams have", width);
  std::vector<float> flat(hidden, hidden + n_tokens * width);
  ops::rms_norm_rows(flat.data(), n_tokens, width, nullptr, eps);
  std::vector<float> mixes(static_cast<size_t>(n_tokens * fn.n_rows));
  matmul_ref(flat.data(), n_tokens, fn, mixes.data());
  return mixes;
}

}  // namespace

void hc_pre(const ModelConfig& c, const HyperConnectionWeights& w, const float* hidden,
            int64_t n_tokens, ops::HcMix* mix, std::vector<float>* collapsed) {
  const int64_t hc = c.hc_mult, dim = c.hidden_size;
  const float hc_eps = static_cast<float>(c.hc_eps);
  QF_CHECK(w.fn.n_rows == (2 + hc) * hc && w.scale.size() == 3, "hc weights do not fit hc_mult",
           hc);
  const std::vector<float> mixes =
      hc_mixes(hidden, n_tokens, hc * dim, w.fn, static_cast<float>(c.rms_norm_eps));
  mix->n_tokens = n_tokens;
  mix->hc = hc;
  mix->pre.assign(n_tokens * hc, 0.0f);
  mix->post.assign(n_tokens * hc, 0.0f);
  mix->comb.assign(n_tokens * hc * hc, 0.0f);
  collapsed->assign(n_tokens * dim, 0.0f);
  const float* base = w.base.data();
  const float pre_scale = w.scale[0], post_scale = w.scale[1], comb_scale = w.scale[2];
  parallel_for(n_tokens, [&](int64_t begin, int64_t end) {
    std::vector<float> logits(hc * hc);
    for (int64_t t = begin; t < end; ++t) {
      const float* m = mixes.data() + t * (2 + hc) * hc;
      float* pre = mix->pre.data() + t * hc;
      float* post = mix->post.data() + t * hc;
      for (int64_t h = 0; h < hc; ++h) {
        pre[h] = sigmoid(m[h] * pre_scale + base[h]) + hc_eps;
        post[h] = 2.0f * sigmoid(m[hc + h] * post_scale + base[hc + h]);
      }
      for (int64_t k = 0; k < hc * hc; ++k) {
        logits[k] = m[2 * hc + k] * comb_scale + base[2 * hc + k];
      }
      ops::sinkhorn_comb(logits.data(), hc, c.hc_sinkhorn_iters, hc_eps,
                         mix->comb.data() + t * hc * hc);
      const float* x = hidden + t * hc * dim;
      float* out = collapsed->data() + t * dim;
      for (int64_t d = 0; d < dim; ++d) {
        float s = 0.0f;
        for (int64_t h = 0; h < hc; ++h) s += pre[h] * x[h * dim + d];
        out[d] = s;
      }
    }
  });
}

std::vector<float> hc_head_collapse(const ModelConfig& c, const GlobalWeights& g,
                                    const float* hidden, int64_t n_tokens) {
  const int64_t hc = c.hc_mult, dim = c.hidden_size;
  const float hc_eps = static_cast<float>(c.hc_eps);
  const std::vector<float> mixes =
      hc_mixes(hidden, n_tokens, hc * dim, g.hc_head_fn, static_cast<float>(c.rms_norm_eps));
  std::vector<float> out(n_tokens * dim, 0.0f);
  const float scale = g.hc_head_scale.at(0);
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::vector<float> pre(hc);
    for (int64_t h = 0; h < hc; ++h) {
      pre[h] = sigmoid(mixes[t * hc + h] * scale + g.hc_head_base[h]) + hc_eps;
    }
    const float* x = hidden + t * hc * dim;
    for (int64_t d = 0; d < dim; ++d) {
      float s = 0.0f;
      for (int64_t h = 0; h < hc; ++h) s += pre[h] * x[h * dim + d];
      out[t * dim + d] = s;
    }
  }
  return out;
}

}  // namespace qf::model
