// DeepseekV4DecoderLayer.forward (transformers 5.17) on the CPU reference path.
#include "model/forward_decoder_layer.hpp"

#include "core/check.hpp"
#include "model/forward_attention.hpp"
#include "model/forward_hyper_connections.hpp"
#include "model/forward_moe.hpp"
#include "ops/hyper_connection_mix.hpp"
#include "ops/rms_norm.hpp"

namespace qf::model {

void decoder_layer_forward(const ModelConfig& c, int layer, const LayerWeights& w,
                           const std::vector<int64_t>& token_ids, int n_seqs, int seq_len,
                           std::vector<float>& hidden, LinearInputObserver* observer,
                           bool bf16_linear_inputs) {
  const int64_t n_tokens = static_cast<int64_t>(n_seqs) * seq_len, dim = c.hidden_size;
  QF_CHECK(n_seqs > 0 && seq_len > 0, "decoder_layer_forward: empty batch", n_seqs, "x", seq_len);
  QF_CHECK(static_cast<int64_t>(hidden.size()) == n_tokens * c.hc_mult * dim,
           "decoder_layer_forward: hidden has", hidden.size(), "values, expected", n_tokens, "x",
           c.hc_mult, "x", dim);
  QF_CHECK(static_cast<int64_t>(token_ids.size()) == n_tokens,
           "decoder_layer_forward:", token_ids.size(), "token ids for", n_tokens, "tokens");
  QF_CHECK(w.layer == layer, "decoder_layer_forward: weights of layer", w.layer, "given for layer",
           layer);
  const float eps = static_cast<float>(c.rms_norm_eps);
  ops::HcMix mix;
  std::vector<float> x;

  hc_pre(c, w.hc_attn, hidden.data(), n_tokens, &mix, &x);
  ops::rms_norm_rows(x.data(), n_tokens, dim, w.attn_norm.data(), eps);
  const std::vector<float> attn_out =
      attention_forward(c, layer, w.attn, x.data(), n_seqs, seq_len, observer, bf16_linear_inputs);
  ops::hc_post(mix, attn_out.data(), dim, hidden.data());

  hc_pre(c, w.hc_ffn, hidden.data(), n_tokens, &mix, &x);
  ops::rms_norm_rows(x.data(), n_tokens, dim, w.ffn_norm.data(), eps);
  const std::vector<float> ffn_out =
      moe_forward(c, layer, w.ffn, x.data(), n_tokens, token_ids, observer, bf16_linear_inputs);
  ops::hc_post(mix, ffn_out.data(), dim, hidden.data());
}

}  // namespace qf::model
