// CPU references of the attention kernels (kernels/forward/attention.cuh): loops over the
// sequences of a batch around the per-sequence model:: functions, which are the spec.
// Does not own: the math itself (src/model/forward_attention.cpp, forward_compressor.cpp).
#include <algorithm>
#include <vector>

#include "core/check.hpp"
#include "kernels/forward/attention.cuh"
#include "ops/compress_pool.hpp"
#include "ops/rope.hpp"
#include "ops/sink_attention.hpp"

namespace qf::kernels {

void sink_attention_ref(const SinkAttentionParams& p) {
  QF_CHECK(p.n_entries == 0 || (p.compressed != nullptr && p.visible != nullptr),
           "sink_attention_ref: entries without compressed / visible");
  const int64_t S = p.seq_len, H = p.n_heads, D = p.head_dim, E = p.n_entries;
  for (int64_t b = 0; b < p.n_seqs; ++b) {
    const std::vector<float> o =
        ops::sink_attention(p.q + b * S * H * D, p.kv + b * S * D, S, H, D, p.sinks, p.window,
                            E > 0 ? p.compressed + b * E * D : nullptr, E,
                            E > 0 ? p.visible + b * S * E : nullptr, p.scale);
    std::copy(o.begin(), o.end(), p.out + b * S * H * D);
  }
}

void compress_pool_ref(const CompressPoolParams& p) {
  const int64_t width = p.overlapping ? 2 * p.head_dim : p.head_dim;
  QF_CHECK(p.rate > 0 && p.rope_dim % 2 == 0 && p.rope_dim <= p.head_dim,
           "compress_pool_ref: bad rate / rope_dim", p.rate, p.rope_dim);
  ops::RopeTable rope;
  rope.rope_dim = p.rope_dim;
  rope.inv_freq.assign(p.inv_freq, p.inv_freq + p.rope_dim / 2);
  rope.attention_scaling = p.attention_scaling;
  const int64_t n_win = p.seq_len / p.rate;
  for (int64_t b = 0; b < p.n_seqs; ++b) {
    const int64_t row0 = b * p.seq_len * width;
    const std::vector<float> e =
        ops::compress_sequence(p.kv + row0, p.gate + row0, p.seq_len, p.ape, p.norm, p.rate,
                               p.head_dim, p.overlapping, rope, p.eps);
    std::copy(e.begin(), e.end(), p.out + b * n_win * p.head_dim);
  }
}

// The HCA branch of model::compressor_forward: entry e is visible once its window is complete.
void causal_visibility_ref(const CausalVisibilityParams& p) {
  for (int64_t b = 0; b < p.n_seqs; ++b) {
    for (int64_t t = 0; t < p.seq_len; ++t) {
      uint8_t* row = p.visible + (b * p.seq_len + t) * p.n_entries;
      for (int64_t e = 0; e < p.n_entries; ++e) row[e] = e < (t + 1) / p.rate ? 1 : 0;
    }
  }
}

void indexer_select_ref(const IndexerSelectParams& p) {
  const int64_t S = p.seq_len, H = p.n_heads, D = p.head_dim, E = p.n_entries;
  for (int64_t b = 0; b < p.n_seqs; ++b) {
    const std::vector<uint8_t> vis =
        ops::indexer_select(p.q + b * S * H * D, p.weights + b * S * H, p.keys + b * E * D, S, E, H,
                            D, p.rate, p.top_k);
    std::copy(vis.begin(), vis.end(), p.visible + b * S * E);
  }
}

size_t indexer_select_workspace_bytes(const IndexerSelectParams& p) {
  return static_cast<size_t>(p.n_seqs * p.seq_len * p.n_entries) * sizeof(float);
}

}  // namespace qf::kernels
