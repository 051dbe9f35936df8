// sink_attention: masked logits get exactly zero weight (transformers adds finfo.min / -inf,
// which underflows to 0 after the max subtraction).
#include "ops/sink_attention.hpp"

#include <algorithm>
#include <cmath>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "ops/matmul.hpp"

namespace qf::ops {

std::vector<float> sink_attention(const float* q, const float* kv, int64_t seq_len, int64_t n_heads,
                                  int64_t head_dim, const float* sinks, int64_t window,
                                  const float* compressed, int64_t n_entries,
                                  const uint8_t* visible, float scale) {
  QF_CHECK(n_entries == 0 || (compressed != nullptr && visible != nullptr),
           "sink_attention: compressed entries without visibility");
  std::vector<float> out(seq_len * n_heads * head_dim, 0.0f);
  parallel_for(seq_len * n_heads, [&](int64_t begin, int64_t end) {
    std::vector<float> logits;
    std::vector<const float*> values;
    for (int64_t job = begin; job < end; ++job) {
      const int64_t t = job / n_heads, h = job % n_heads;
      const float* qv = q + (t * n_heads + h) * head_dim;
      logits.clear();
      values.clear();
      for (int64_t j = std::max<int64_t>(0, t - window + 1); j <= t; ++j) {
        logits.push_back(dot_ref(qv, kv + j * head_dim, head_dim) * scale);
        values.push_back(kv + j * head_dim);
      }
      for (int64_t e = 0; e < n_entries; ++e) {
        if (!visible[t * n_entries + e]) continue;
        logits.push_back(dot_ref(qv, compressed + e * head_dim, head_dim) * scale);
        values.push_back(compressed + e * head_dim);
      }
      float m = sinks[h];
      for (float l : logits) m = std::max(m, l);
      float denom = std::exp(sinks[h] - m);
      for (float& l : logits) denom += (l = std::exp(l - m));
      float* o = out.data() + (t * n_heads + h) * head_dim;
      for (size_t k = 0; k < logits.size(); ++k) {
        const float p = logits[k] / denom;
        for (int64_t d = 0; d < head_dim; ++d) o[d] += p * values[k][d];
      }
    }
  });
  return out;
}

}  // namespace qf::ops
