// Compressed KV branch of CSA / HCA attention in the reference forward: the gated pooling
// compressor (transformers DeepseekV4HCACompressor / DeepseekV4CSACompressor, no-cache path)
// and the Lightning Indexer top-k of CSA. Does not own: the attention itself (forward_attention).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/forward_config.hpp"
#include "model/forward_rope.hpp"
#include "model/layer_weights.hpp"
#include "model/linear_observer.hpp"

namespace qf::model {

// Pools one sequence's projected rows kv/gate [seq_len, width] into n = seq_len / rate entries
// [n, head_dim] (a trailing partial window is dropped, as transformers does without a cache):
//  - non-overlapping (HCA, width = head_dim): entry w = sum over the rate rows j of window w of
//    softmax_j(gate + ape[j]) * kv, per channel;
//  - overlapping (CSA, width = 2*head_dim): entry w pools 2*rate slots: the previous window's
//    first-half channels (Ca, gate + ape[:, :hd]) and window w's second half (Cb); window 0's
//    Ca slots are empty (weight 0).
// Then RMSNorm(norm weight) and RoPE on the trailing rope dims at position w * rate.
std::vector<float> compress_sequence(const float* kv, const float* gate, int64_t seq_len,
                                     const CompressorWeights& w, int64_t rate, int64_t head_dim,
                                     bool overlapping, const RopeTable& rope, float eps);

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
CompressedKv compressor_forward(const ForwardConfig& config, int layer, const AttentionWeights& w,
                                const float* x, const float* q_residual, int n_seqs,
                                int64_t seq_len, LinearInputObserver* observer);

// Indexer scores of one sequence: score[t][w] = sum_h weights[t,h] * relu(q[t,h] . k[w]) *
// index_head_dim^-0.5 (q, k roped; weights already scaled by index_n_heads^-0.5), then top-k
// among the causally complete entries; returns visible [seq_len, n_entries].
// Ties in score are broken toward the lower entry index.
std::vector<uint8_t> indexer_select(const float* q, const float* weights, const float* keys,
                                    int64_t seq_len, int64_t n_entries, int64_t n_heads,
                                    int64_t head_dim, int64_t rate, int64_t top_k);

}  // namespace qf::model
