// layer_flops_per_token: the multiply-adds of each step of the reference forward.
#include "model/forward_flops.hpp"

#include <algorithm>

namespace qf::model {

LayerFlops layer_flops_per_token(const ModelConfig& c, int layer, int64_t seq_len) {
  const double d = double(c.hidden_size), hd = double(c.head_dim), nh = c.num_attention_heads;
  const double ql = double(c.q_lora_rank), hc = c.hc_mult, inter = double(c.moe_intermediate_size);
  const double L = double(seq_len);
  LayerFlops f;
  double macs = 0;
  macs += 2 * (hc * d) * (2 + hc) * hc;                    // two mHC sites: mixes GEMM
  macs += d * ql + ql * nh * hd + d * hd;                  // wq_a, wq_b, wkv
  macs += nh * hd * double(c.o_lora_rank);                 // wo_a (block-diagonal: each group once)
  macs += double(c.o_groups) * double(c.o_lora_rank) * d;  // wo_b
  macs += d * c.n_routed_experts;                          // router
  const double expert_macs = (c.num_experts_per_tok + c.n_shared_experts) * 3 * d * inter;
  macs += expert_macs;
  // Attention core: a query at position t sees min(window, t + 1) keys; averaged over t.
  const double w = double(c.sliding_window);
  const double avg_window = L <= w ? (L + 1) / 2 : (w * (w + 1) / 2 + (L - w) * w) / L;
  double avg_entries = 0;
  const int rate = c.compress_ratio(layer);
  if (rate > 0) {
    const double width = c.has_indexer(layer) ? 2 * hd : hd;
    macs += 2 * d * width;                                          // compressor wkv, wgate
    const double n_causal_avg = std::max(0.0, (L / rate - 1) / 2);  // entries complete before t
    avg_entries = n_causal_avg;
    if (c.has_indexer(layer)) {
      const double ihd = double(c.index_head_dim), inh = c.index_n_heads;
      macs += 2 * d * 2 * ihd + ql * inh * ihd + d * inh;  // indexer compressor, wq_b, weights
      f.attention += 2 * inh * ihd * n_causal_avg;         // indexer scores
      avg_entries = std::min<double>(c.index_topk, n_causal_avg);
    }
  }
  f.attention += 2 * nh * 2 * hd * (avg_window + avg_entries);  // q.k and p.v
  f.linears = 2 * macs;
  f.experts = 2 * expert_macs;
  return f;
}

double model_flops_per_token(const ModelConfig& config, int64_t seq_len) {
  double total = 0;
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    total += layer_flops_per_token(config, l, seq_len).total();
  }
  return total;
}

}  // namespace qf::model
