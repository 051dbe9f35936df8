// DeepseekV4Attention.forward + eager_attention_forward (transformers 5.17) in FP32.
// Notes against transformers: CSA/HCA layers rope q/kv with the "compress" table (theta
// compress_rope_theta, YaRN if configured), sliding layers with "main"; the sliding-window
// mask (kv > q - window) applies to every layer type; masked logits get exactly zero weight
// (transformers adds finfo.min / -inf, which underflows to 0 after the max subtraction).
#include "model/forward_attention.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/check.hpp"
#include "model/forward_compressor.hpp"
#include "model/forward_linear.hpp"
#include "model/forward_rms_norm.hpp"
#include "model/forward_rope.hpp"

namespace qf::model {

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

std::vector<float> attention_forward(const ForwardConfig& c, int layer, const AttentionWeights& w,
                                     const float* x, int n_seqs, int64_t seq_len,
                                     LinearInputObserver* observer) {
  const std::string p = "layers." + std::to_string(layer) + ".attn.";
  const int64_t n_tokens = n_seqs * seq_len, nh = c.num_attention_heads, hd = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const RopeTable rope = make_rope_table(c.rope_for_layer(layer), hd, c.max_position_embeddings);

  // q: wq_a -> q_norm (weighted) -> wq_b -> per-head unweighted RMSNorm -> RoPE.
  std::vector<float> q_residual =
      linear_forward(p + "wq_a", x, n_tokens, w.wq_a, observer, c.bf16_linear_inputs);
  rms_norm_rows(q_residual.data(), n_tokens, c.q_lora_rank, w.q_norm.data(), eps);
  std::vector<float> q = linear_forward(p + "wq_b", q_residual.data(), n_tokens, w.wq_b, observer,
                                        c.bf16_linear_inputs);
  rms_norm_rows(q.data(), n_tokens * nh, hd, nullptr, eps);
  // kv: wkv -> kv_norm -> RoPE (one head, read as both K and V).
  std::vector<float> kv =
      linear_forward(p + "wkv", x, n_tokens, w.wkv, observer, c.bf16_linear_inputs);
  rms_norm_rows(kv.data(), n_tokens, hd, w.kv_norm.data(), eps);
  for (int64_t tok = 0; tok < n_tokens; ++tok) {
    const int64_t pos = tok % seq_len;
    apply_rope_trailing_n(q.data() + tok * nh * hd, nh, hd, rope, pos, false);
    apply_rope_trailing_n(kv.data() + tok * hd, 1, hd, rope, pos, false);
  }

  CompressedKv comp;
  if (w.has_compressor) {
    comp = compressor_forward(c, layer, w, x, q_residual.data(), n_seqs, seq_len, observer);
  }
  const float scale = static_cast<float>(std::pow(static_cast<double>(hd), -0.5));
  std::vector<float> attn(n_tokens * nh * hd);
  for (int b = 0; b < n_seqs; ++b) {
    const int64_t t0 = b * seq_len;
    const std::vector<float> o = sink_attention(
        q.data() + t0 * nh * hd, kv.data() + t0 * hd, seq_len, nh, hd, w.sinks.data(),
        c.sliding_window,
        comp.n_entries > 0 ? comp.entries.data() + b * comp.n_entries * hd : nullptr,
        comp.n_entries, comp.n_entries > 0 ? comp.visible.data() + t0 * comp.n_entries : nullptr,
        scale);
    std::copy(o.begin(), o.end(), attn.begin() + t0 * nh * hd);
  }
  // K = V carried RoPE into the output's rope slice: rotate back by -angle at the query.
  for (int64_t tok = 0; tok < n_tokens; ++tok) {
    apply_rope_trailing_n(attn.data() + tok * nh * hd, nh, hd, rope, tok % seq_len, true);
  }

  // Grouped output projection: heads*hd split into o_groups contiguous groups; group g is
  // projected by rows [g*o_lora_rank, (g+1)*o_lora_rank) of wo_a. Then wo_b mixes all groups.
  const int64_t groups = c.o_groups, group_in = nh * hd / groups, rank = c.o_lora_rank;
  QF_CHECK(w.wo_a.n_rows == groups * rank && w.wo_a.n_cols == group_in, "layer", layer,
           "wo_a shape does not match o_groups / o_lora_rank");
  if (observer != nullptr) observer->observe(p + "wo_a", attn.data(), n_tokens * groups, group_in);
  if (observer != nullptr && observer->transforms_inputs()) {
    observer->transform_input(p + "wo_a", attn.data(), n_tokens * groups, group_in);
  }
  if (c.bf16_linear_inputs) attn = round_to_bf16(attn.data(), static_cast<int64_t>(attn.size()));
  std::vector<float> low(n_tokens * groups * rank);
  for (int64_t g = 0; g < groups; ++g) {  // group g of every token against its rows of wo_a
    matmul_rows_ref(attn.data() + g * group_in, groups * group_in, n_tokens,
                    w.wo_a.row(g * rank), rank, group_in, low.data() + g * rank, groups * rank);
  }
  return linear_forward(p + "wo_b", low.data(), n_tokens, w.wo_b, observer, c.bf16_linear_inputs);
}

}  // namespace qf::model
