// compress_sequence and indexer_select (transformers 5.17 modeling_deepseek_v4.py with
// past_key_values = None: every complete window is compressed at once, positions start at 0).
#include "ops/compress_pool.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/parallel.hpp"
#include "ops/matmul.hpp"
#include "ops/rms_norm.hpp"

namespace qf::ops {

std::vector<float> compress_sequence(const float* kv, const float* gate, int64_t seq_len,
                                     const float* ape, const float* norm, int64_t rate,
                                     int64_t head_dim, bool overlapping, const RopeTable& rope,
                                     float eps) {
  const int64_t width = overlapping ? 2 * head_dim : head_dim;
  const int64_t n_windows = seq_len / rate;
  const int64_t n_slots = overlapping ? 2 * rate : rate;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  std::vector<float> out(n_windows * head_dim, 0.0f);
  std::vector<float> slot_kv(n_slots), slot_logit(n_slots);
  for (int64_t win = 0; win < n_windows; ++win) {
    for (int64_t d = 0; d < head_dim; ++d) {
      // Gather the slots of this channel: [Ca of window win-1 | Cb of window win] (CSA) or
      // the rate rows of window win (HCA).
      for (int64_t j = 0; j < rate; ++j) {
        const int64_t row = win * rate + j;
        if (overlapping) {
          if (win > 0) {
            const int64_t prev = row - rate;
            slot_kv[j] = kv[prev * width + d];
            slot_logit[j] = gate[prev * width + d] + ape[j * width + d];
          } else {
            slot_kv[j] = 0.0f;
            slot_logit[j] = neg_inf;
          }
          slot_kv[rate + j] = kv[row * width + head_dim + d];
          slot_logit[rate + j] = gate[row * width + head_dim + d] + ape[j * width + head_dim + d];
        } else {
          slot_kv[j] = kv[row * width + d];
          slot_logit[j] = gate[row * width + d] + ape[j * width + d];
        }
      }
      const float m = *std::max_element(slot_logit.begin(), slot_logit.end());
      float denom = 0.0f;
      for (int64_t s = 0; s < n_slots; ++s) denom += std::exp(slot_logit[s] - m);
      float pooled = 0.0f;
      for (int64_t s = 0; s < n_slots; ++s) {
        pooled += slot_kv[s] * (std::exp(slot_logit[s] - m) / denom);
      }
      out[win * head_dim + d] = pooled;
    }
  }
  rms_norm_rows(out.data(), n_windows, head_dim, norm, eps);
  for (int64_t win = 0; win < n_windows; ++win) {
    apply_rope_trailing_n(out.data() + win * head_dim, 1, head_dim, rope, win * rate, false);
  }
  return out;
}

std::vector<uint8_t> indexer_select(const float* q, const float* weights, const float* keys,
                                    int64_t seq_len, int64_t n_entries, int64_t n_heads,
                                    int64_t head_dim, int64_t rate, int64_t top_k) {
  std::vector<uint8_t> visible(seq_len * n_entries, 0);
  const float softmax_scale = static_cast<float>(std::pow(static_cast<double>(head_dim), -0.5));
  const int64_t k = std::min(top_k, n_entries);
  parallel_for(seq_len, [&](int64_t begin, int64_t end) {
    std::vector<float> score(n_entries);
    std::vector<int64_t> order(n_entries);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n_causal = std::min(n_entries, (t + 1) / rate);  // entries w < (t+1)/rate
      for (int64_t e = 0; e < n_causal; ++e) {
        float s = 0.0f;
        for (int64_t h = 0; h < n_heads; ++h) {
          const float* qh = q + (t * n_heads + h) * head_dim;
          const float* ke = keys + e * head_dim;
          const float dot = dot_ref(qh, ke, head_dim);
          s += (std::max(dot, 0.0f) * softmax_scale) * weights[t * n_heads + h];
        }
        score[e] = s;
      }
      // top-k over all entries with the future ones at -inf; picks that land on the future
      // ones are invalid, so the result is the best min(k, n_causal) causal entries.
      const int64_t n_pick = std::min(k, n_causal);
      std::iota(order.begin(), order.begin() + n_causal, 0);
      std::partial_sort(order.begin(), order.begin() + n_pick, order.begin() + n_causal,
                        [&](int64_t a, int64_t b) {
                          return score[a] > score[b] || (score[a] == score[b] && a < b);
                        });
      for (int64_t i = 0; i < n_pick; ++i) visible[t * n_entries + order[i]] = 1;
    }
  });
  return visible;
}

}  // namespace qf::ops
