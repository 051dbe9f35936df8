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
#include "core/parallel.hpp"
#include "model/forward_compressor.hpp"
#include "model/forward_linear.hpp"
#include "ops/matmul.hpp"
#include "ops/rms_norm.hpp"
#include "ops/rope.hpp"
#include "ops/sink_attention.hpp"

namespace qf::model {

std::vector<float> attention_forward(const ModelConfig& c, int layer, const AttentionWeights& w,
                                     const float* x, int n_seqs, int64_t seq_len,
                                     LinearInputObserver* observer, bool bf16_linear_inputs) {
  const std::string p = "layers." + std::to_string(layer) + ".attn.";
  const int64_t n_tokens = n_seqs * seq_len, nh = c.num_attention_heads, hd = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const ops::RopeTable rope =
      ops::make_rope_table(c.rope_for_layer(layer), hd, c.max_position_embeddings);

  // q: wq_a -> q_norm (weighted) -> wq_b -> per-head unweighted RMSNorm -> RoPE.
  std::vector<float> q_residual =
      linear_forward(p + "wq_a", x, n_tokens, w.wq_a, observer, bf16_linear_inputs);
  ops::rms_norm_rows(q_residual.data(), n_tokens, c.q_lora_rank, w.q_norm.data(), eps);
  std::vector<float> q =
      linear_forward(p + "wq_b", q_residual.data(), n_tokens, w.wq_b, observer, bf16_linear_inputs);
  ops::rms_norm_rows(q.data(), n_tokens * nh, hd, nullptr, eps);
  // kv: wkv -> kv_norm -> RoPE (one head, read as both K and V).
  std::vector<float> kv =
      linear_forward(p + "wkv", x, n_tokens, w.wkv, observer, bf16_linear_inputs);
  ops::rms_norm_rows(kv.data(), n_tokens, hd, w.kv_norm.data(), eps);
  for (int64_t tok = 0; tok < n_tokens; ++tok) {
    const int64_t pos = tok % seq_len;
    ops::apply_rope_trailing_n(q.data() + tok * nh * hd, nh, hd, rope, pos, false);
    ops::apply_rope_trailing_n(kv.data() + tok * hd, 1, hd, rope, pos, false);
  }

  CompressedKv comp;
  if (w.has_compressor) {
    comp = compressor_forward(c, layer, w, x, q_residual.data(), n_seqs, seq_len, observer,
                              bf16_linear_inputs);
  }
  const float scale = static_cast<float>(std::pow(static_cast<double>(hd), -0.5));
  std::vector<float> attn(n_tokens * nh * hd);
  for (int b = 0; b < n_seqs; ++b) {
    const int64_t t0 = b * seq_len;
    const std::vector<float> o = ops::sink_attention(
        q.data() + t0 * nh * hd, kv.data() + t0 * hd, seq_len, nh, hd, w.sinks.data(),
        c.sliding_window,
        comp.n_entries > 0 ? comp.entries.data() + b * comp.n_entries * hd : nullptr,
        comp.n_entries, comp.n_entries > 0 ? comp.visible.data() + t0 * comp.n_entries : nullptr,
        scale);
    std::copy(o.begin(), o.end(), attn.begin() + t0 * nh * hd);
  }
  // K = V carried RoPE into the output's rope slice: rotate back by -angle at the query.
  for (int64_t tok = 0; tok < n_tokens; ++tok) {
    ops::apply_rope_trailing_n(attn.data() + tok * nh * hd, nh, hd, rope, tok % seq_len, true);
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
  if (bf16_linear_inputs) attn = round_to_bf16(attn.data(), static_cast<int64_t>(attn.size()));
  std::vector<float> low(n_tokens * groups * rank);
  for (int64_t g = 0; g < groups; ++g) {  // group g of every token against its rows of wo_a
    ops::matmul_rows_ref(attn.data() + g * group_in, groups * group_in, n_tokens,
                         w.wo_a.row(g * rank), rank, group_in, low.data() + g * rank,
                         groups * rank);
  }
  return linear_forward(p + "wo_b", low.data(), n_tokens, w.wo_b, observer, bf16_linear_inputs);
}

int linear_input_groups(const ModelConfig& config, const std::string& linear_name) {
  const std::string tail = ".attn.wo_a";
  const bool wo_a = linear_name.size() > tail.size() &&
                    linear_name.compare(linear_name.size() - tail.size(), tail.size(), tail) == 0;
  return wo_a ? static_cast<int>(config.o_groups) : 1;
}

}  // namespace qf::model
