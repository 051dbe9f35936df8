// sinkhorn_comb and hc_post in FP32, in transformers 5.17's order of operations.
#include "ops/hyper_connection_mix.hpp"

#include <algorithm>
#include <cmath>

#include "core/parallel.hpp"

namespace qf::ops {

void sinkhorn_comb(const float* logits, int64_t hc, int64_t iters, float eps, float* comb) {
  for (int64_t i = 0; i < hc; ++i) {  // softmax over the last axis, + eps
    const float* l = logits + i * hc;
    float* c = comb + i * hc;
    const float m = *std::max_element(l, l + hc);
    float sum = 0.0f;
    for (int64_t j = 0; j < hc; ++j) sum += (c[j] = std::exp(l[j] - m));
    for (int64_t j = 0; j < hc; ++j) c[j] = c[j] / sum + eps;
  }
  auto normalize_columns = [&] {
    for (int64_t j = 0; j < hc; ++j) {
      float s = 0.0f;
      for (int64_t i = 0; i < hc; ++i) s += comb[i * hc + j];
      for (int64_t i = 0; i < hc; ++i) comb[i * hc + j] /= (s + eps);
    }
  };
  auto normalize_rows = [&] {
    for (int64_t i = 0; i < hc; ++i) {
      float s = 0.0f;
      for (int64_t j = 0; j < hc; ++j) s += comb[i * hc + j];
      for (int64_t j = 0; j < hc; ++j) comb[i * hc + j] /= (s + eps);
    }
  };
  normalize_columns();
  for (int64_t it = 0; it + 1 < iters; ++it) {
    normalize_rows();
    normalize_columns();
  }
}

void hc_post(const HcMix& mix, const float* block_out, int64_t dim, float* hidden) {
  const int64_t hc = mix.hc;
  parallel_for(mix.n_tokens, [&](int64_t begin, int64_t end) {
    std::vector<float> old(hc * dim);
    for (int64_t t = begin; t < end; ++t) {
      float* x = hidden + t * hc * dim;
      std::copy(x, x + hc * dim, old.begin());
      const float* post = mix.post.data() + t * hc;
      const float* comb = mix.comb.data() + t * hc * hc;
      const float* y = block_out + t * dim;
      for (int64_t k = 0; k < hc; ++k) {
        for (int64_t d = 0; d < dim; ++d) {
          float s = 0.0f;
          for (int64_t j = 0; j < hc; ++j) s += comb[j * hc + k] * old[j * dim + d];
          x[k * dim + d] = post[k] * y[d] + s;
        }
      }
    }
  });
}

}  // namespace qf::ops
