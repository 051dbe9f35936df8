// Embedding, layer loop, hyper-head, final norm and head of the CPU reference forward.
#include "model/model_forward.hpp"

#include <algorithm>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "model/forward_decoder_layer.hpp"
#include "model/forward_hyper_connections.hpp"
#include "model/forward_linear.hpp"
#include "ops/rms_norm.hpp"

namespace qf::model {

void check_token_ids(const std::vector<int64_t>& token_ids, int64_t vocab) {
  for (const int64_t id : token_ids) {
    QF_CHECK(id >= 0 && id < vocab, "token id", id, "outside the vocabulary of", vocab);
  }
}

std::vector<float> embed_tokens(const ModelConfig& c, const GlobalWeights& g,
                                const std::vector<int64_t>& token_ids) {
  const int64_t dim = c.hidden_size, hc = c.hc_mult;
  check_token_ids(token_ids, g.embed.n_rows);
  // Gigabytes at calibration sizes (16 x 4096 tokens x 4 x 4096 floats = 4.3 GB): filled by
  // every core, each touching its own pages first.
  std::vector<float> hidden(token_ids.size() * hc * dim);
  parallel_for(static_cast<int64_t>(token_ids.size()), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* row = g.embed.row(token_ids[size_t(t)]);
      for (int64_t h = 0; h < hc; ++h) {
        std::copy(row, row + dim, hidden.begin() + (t * hc + h) * dim);
      }
    }
  });
  return hidden;
}

std::vector<float> final_hidden(const ModelConfig& c, const GlobalWeights& g,
                                const std::vector<float>& hidden) {
  const int64_t n_tokens = static_cast<int64_t>(hidden.size()) / (c.hc_mult * c.hidden_size);
  std::vector<float> out = hc_head_collapse(c, g, hidden.data(), n_tokens);
  ops::rms_norm_rows(out.data(), n_tokens, c.hidden_size, g.norm.data(),
                     static_cast<float>(c.rms_norm_eps));
  return out;
}

std::vector<float> final_logits(const ModelConfig& c, const GlobalWeights& g,
                                const std::vector<float>& final_hidden_states,
                                LinearInputObserver* observer) {
  const int64_t n_tokens = static_cast<int64_t>(final_hidden_states.size()) / c.hidden_size;
  return linear_forward("head", final_hidden_states.data(), n_tokens, g.head, observer);
}

ModelOutput model_forward(const ModelConfig& c, const GlobalWeights& g,
                          const std::function<LayerWeights(int)>& layer_source,
                          const std::vector<int64_t>& token_ids, int n_seqs, int seq_len,
                          LinearInputObserver* observer) {
  QF_CHECK(static_cast<int64_t>(token_ids.size()) == static_cast<int64_t>(n_seqs) * seq_len,
           "model_forward:", token_ids.size(), "token ids for", n_seqs, "x", seq_len);
  std::vector<float> hidden = embed_tokens(c, g, token_ids);
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const LayerWeights w = layer_source(layer);
    decoder_layer_forward(c, layer, w, token_ids, n_seqs, seq_len, hidden, observer);
  }
  ModelOutput out;
  out.hidden = final_hidden(c, g, hidden);
  out.logits = final_logits(c, g, out.hidden, observer);
  return out;
}

}  // namespace qf::model
