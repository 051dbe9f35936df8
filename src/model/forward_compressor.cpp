// Compressor pooling and Lightning Indexer of the reference forward, transformers 5.17
// modeling_deepseek_v4.py (DeepseekV4HCACompressor, DeepseekV4CSACompressor, DeepseekV4Indexer,
// DeepseekV4IndexerScorer) with past_key_values = None: every complete window of the prompt is
// compressed at once, the trailing partial window is dropped, positions start at 0.
// Divergences from DeepSeek's reference inference/model.py (transformers is followed): the
// reference Hadamard-rotates the indexer q and keys and simulates FP4 on them, and simulates
// FP8 on the non-rope dims of the compressed / window KV (QAT); transformers does neither.
#include "model/forward_compressor.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/check.hpp"
#include "model/forward_linear.hpp"
#include "model/forward_rms_norm.hpp"

namespace qf::model {

std::vector<float> compress_sequence(const float* kv, const float* gate, int64_t seq_len,
                                     const CompressorWeights& w, int64_t rate, int64_t head_dim,
                                     bool overlapping, const RopeTable& rope, float eps) {
  const int64_t width = overlapping ? 2 * head_dim : head_dim;
  QF_CHECK(w.ape.n_rows == rate && w.ape.n_cols == width, "compressor ape is", w.ape.n_rows, "x",
           w.ape.n_cols, "expected", rate, "x", width);
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
            slot_logit[j] = gate[prev * width + d] + w.ape.data[j * width + d];
          } else {
            slot_kv[j] = 0.0f;
            slot_logit[j] = neg_inf;
          }
          slot_kv[rate + j] = kv[row * width + head_dim + d];
          slot_logit[rate + j] =
              gate[row * width + head_dim + d] + w.ape.data[j * width + head_dim + d];
        } else {
          slot_kv[j] = kv[row * width + d];
          slot_logit[j] = gate[row * width + d] + w.ape.data[j * width + d];
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
  rms_norm_rows(out.data(), n_windows, head_dim, w.norm.data(), eps);
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

CompressedKv compressor_forward(const ForwardConfig& c, int layer, const AttentionWeights& w,
                                const float* x, const float* q_residual, int n_seqs,
                                int64_t seq_len, LinearInputObserver* observer) {
  QF_CHECK(w.has_compressor, "layer", layer, "has no compressor");
  const std::string p = "layers." + std::to_string(layer) + ".attn.";
  const int64_t n_tokens = n_seqs * seq_len, hd = c.head_dim, rate = c.compress_rate(layer);
  const bool csa = c.layer_types.at(layer) == AttentionKind::kCompressedSparse;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const RopeTable rope = make_rope_table(c.rope_compress, hd, c.max_position_embeddings);

  CompressedKv out;
  out.n_entries = seq_len / rate;
  const std::vector<float> kv = linear_forward(p + "compressor.wkv", x, n_tokens, w.compressor.wkv,
                                               observer, c.bf16_linear_inputs);
  const std::vector<float> gate = linear_forward(
      p + "compressor.wgate", x, n_tokens, w.compressor.wgate, observer, c.bf16_linear_inputs);
  const int64_t width = w.compressor.wkv.n_rows;
  QF_CHECK(width == (csa ? 2 * hd : hd), "layer", layer, "compressor width", width);
  out.entries.resize(n_seqs * out.n_entries * hd);
  for (int b = 0; b < n_seqs; ++b) {
    const std::vector<float> e =
        compress_sequence(kv.data() + b * seq_len * width, gate.data() + b * seq_len * width,
                          seq_len, w.compressor, rate, hd, csa, rope, eps);
    std::copy(e.begin(), e.end(), out.entries.begin() + b * out.n_entries * hd);
  }

  out.visible.assign(n_seqs * seq_len * out.n_entries, 0);
  if (!csa) {
    for (int b = 0; b < n_seqs; ++b) {
      for (int64_t t = 0; t < seq_len; ++t) {
        for (int64_t e = 0; e < out.n_entries && e < (t + 1) / rate; ++e) {
          out.visible[(b * seq_len + t) * out.n_entries + e] = 1;
        }
      }
    }
    return out;
  }

  // Lightning Indexer: its own overlapping compressor at index_head_dim, queries from
  // q_residual (the normed low-rank q), per-head weights from x. Both RoPEs use the compress
  // theta at the query / window positions.
  const IndexerWeights& iw = w.indexer;
  const int64_t ihd = c.index_head_dim, inh = c.index_n_heads;
  const RopeTable irope = make_rope_table(c.rope_compress, hd, c.max_position_embeddings);
  QF_CHECK(irope.rope_dim <= ihd, "indexer head dim", ihd, "smaller than rope dim");
  const std::vector<float> ikv = linear_forward(p + "indexer.compressor.wkv", x, n_tokens,
                                                iw.compressor.wkv, observer, c.bf16_linear_inputs);
  const std::vector<float> igate =
      linear_forward(p + "indexer.compressor.wgate", x, n_tokens, iw.compressor.wgate, observer,
                     c.bf16_linear_inputs);
  std::vector<float> iq = linear_forward(p + "indexer.wq_b", q_residual, n_tokens, iw.wq_b,
                                         observer, c.bf16_linear_inputs);
  std::vector<float> iweights = linear_forward(p + "indexer.weights_proj", x, n_tokens,
                                               iw.weights_proj, observer, c.bf16_linear_inputs);
  const float weights_scaling = static_cast<float>(std::pow(static_cast<double>(inh), -0.5));
  for (float& v : iweights) v *= weights_scaling;
  for (int b = 0; b < n_seqs; ++b) {
    for (int64_t t = 0; t < seq_len; ++t) {
      apply_rope_trailing_n(iq.data() + (b * seq_len + t) * inh * ihd, inh, ihd, irope, t, false);
    }
  }
  for (int b = 0; b < n_seqs; ++b) {
    const std::vector<float> keys =
        compress_sequence(ikv.data() + b * seq_len * 2 * ihd, igate.data() + b * seq_len * 2 * ihd,
                          seq_len, iw.compressor, rate, ihd, true, irope, eps);
    const std::vector<uint8_t> vis =
        indexer_select(iq.data() + b * seq_len * inh * ihd, iweights.data() + b * seq_len * inh,
                       keys.data(), seq_len, out.n_entries, inh, ihd, rate, c.index_topk);
    std::copy(vis.begin(), vis.end(), out.visible.begin() + b * seq_len * out.n_entries);
  }
  return out;
}

}  // namespace qf::model
