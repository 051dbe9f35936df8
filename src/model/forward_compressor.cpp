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
#include "core/parallel.hpp"
#include "model/forward_linear.hpp"
#include "ops/compress_pool.hpp"
#include "ops/rms_norm.hpp"

namespace qf::model {
namespace {

// ops::compress_sequence on one sequence with the compressor's weight shapes checked first.
std::vector<float> pool_sequence(const float* kv, const float* gate, int64_t seq_len,
                                 const CompressorWeights& w, int64_t rate, int64_t head_dim,
                                 bool overlapping, const ops::RopeTable& rope, float eps) {
  const int64_t width = overlapping ? 2 * head_dim : head_dim;
  QF_CHECK(w.ape.n_rows == rate && w.ape.n_cols == width, "compressor ape is", w.ape.n_rows, "x",
           w.ape.n_cols, "expected", rate, "x", width);
  return ops::compress_sequence(kv, gate, seq_len, w.ape.data.data(), w.norm.data(), rate, head_dim,
                                overlapping, rope, eps);
}

}  // namespace

CompressedKv compressor_forward(const ModelConfig& c, int layer, const AttentionWeights& w,
                                const float* x, const float* q_residual, int n_seqs,
                                int64_t seq_len, LinearInputObserver* observer,
                                bool bf16_linear_inputs) {
  QF_CHECK(w.has_compressor, "layer", layer, "has no compressor");
  const std::string p = "layers." + std::to_string(layer) + ".attn.";
  const int64_t n_tokens = n_seqs * seq_len, hd = c.head_dim, rate = c.compress_ratio(layer);
  const bool csa = c.attention_kind(layer) == AttentionKind::kCompressedSparse;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const ops::RopeTable rope = ops::make_rope_table(c.rope_compress, hd, c.max_position_embeddings);

  CompressedKv out;
  out.n_entries = seq_len / rate;
  const std::vector<float> kv = linear_forward(p + "compressor.wkv", x, n_tokens, w.compressor.wkv,
                                               observer, bf16_linear_inputs);
  const std::vector<float> gate = linear_forward(p + "compressor.wgate", x, n_tokens,
                                                 w.compressor.wgate, observer, bf16_linear_inputs);
  const int64_t width = w.compressor.wkv.n_rows;
  QF_CHECK(width == (csa ? 2 * hd : hd), "layer", layer, "compressor width", width);
  out.entries.resize(n_seqs * out.n_entries * hd);
  for (int b = 0; b < n_seqs; ++b) {
    const std::vector<float> e =
        pool_sequence(kv.data() + b * seq_len * width, gate.data() + b * seq_len * width, seq_len,
                      w.compressor, rate, hd, csa, rope, eps);
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
  const ops::RopeTable irope = ops::make_rope_table(c.rope_compress, hd, c.max_position_embeddings);
  QF_CHECK(irope.rope_dim <= ihd, "indexer head dim", ihd, "smaller than rope dim");
  const std::vector<float> ikv = linear_forward(p + "indexer.compressor.wkv", x, n_tokens,
                                                iw.compressor.wkv, observer, bf16_linear_inputs);
  const std::vector<float> igate =
      linear_forward(p + "indexer.compressor.wgate", x, n_tokens, iw.compressor.wgate, observer,
                     bf16_linear_inputs);
  std::vector<float> iq = linear_forward(p + "indexer.wq_b", q_residual, n_tokens, iw.wq_b,
                                         observer, bf16_linear_inputs);
  std::vector<float> iweights = linear_forward(p + "indexer.weights_proj", x, n_tokens,
                                               iw.weights_proj, observer, bf16_linear_inputs);
  const float weights_scaling = static_cast<float>(std::pow(static_cast<double>(inh), -0.5));
  for (float& v : iweights) v *= weights_scaling;
  for (int b = 0; b < n_seqs; ++b) {
    for (int64_t t = 0; t < seq_len; ++t) {
      ops::apply_rope_trailing_n(iq.data() + (b * seq_len + t) * inh * ihd, inh, ihd, irope, t,
                                 false);
    }
  }
  for (int b = 0; b < n_seqs; ++b) {
    const std::vector<float> keys =
        pool_sequence(ikv.data() + b * seq_len * 2 * ihd, igate.data() + b * seq_len * 2 * ihd,
                      seq_len, iw.compressor, rate, ihd, true, irope, eps);
    const std::vector<uint8_t> vis = ops::indexer_select(
        iq.data() + b * seq_len * inh * ihd, iweights.data() + b * seq_len * inh, keys.data(),
        seq_len, out.n_entries, inh, ihd, rate, c.index_topk);
    std::copy(vis.begin(), vis.end(), out.visible.begin() + b * seq_len * out.n_entries);
  }
  return out;
}

}  // namespace qf::model
