// Compressed KV branch of CSA / HCA attention in the reference forward: the gated pooling
// compressor (transformers DeepseekV4HCACompressor / DeepseekV4CSACompressor, no-cache path)
// and the Lightning Indexer top-k of CSA. Does not own: the attention itself (forward_attention).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/layer_weights.hpp"
#include "model/linear_observer.hpp"
#include "ops/rope.hpp"

namespace qf::model {

// The compressed entries of every sequence and which of them each query may attend to.
struct CompressedKv {
  int64_t n_entries = 0;         // per sequence: seq_len / rate
  std::vector<float> entries;    // [n_seqs, n_entries, head_dim]
  std::vector<uint8_t> visible;  // [n_seqs, seq_len, n_entries]: 1 = attend
};

// Runs the layer's compressor (and for CSA its indexer) on the attention input x [T, hidden]
// and q_residual [T, q_lora_rank] (T = n_seqs * seq_len, sequence-major). Visibility:
//   HCA: entry w is visible to query t iff w < (t + 1) / rate (its window is complete);
//   CSA: those entries, further restricted to the indexer's top index_topk by score.
// Observes attn.compressor.{wkv,wgate} and attn.indexer.{compressor.wkv,compressor.wgate,wq_b,
// weights_proj} under "layers.<layer>.".
CompressedKv compressor_forward(const ModelConfig& config, int layer, const AttentionWeights& w,
                                const float* x, const float* q_residual, int n_seqs,
                                int64_t seq_len, LinearInputObserver* observer,
                                bool bf16_linear_inputs = false);

}  // namespace qf::model
