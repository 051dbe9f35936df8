// The compressed-KV arithmetic of CSA / HCA attention for one sequence: gated pooling of
// projected rows into entries (transformers DeepseekV4HCACompressor / DeepseekV4CSACompressor,
// no-cache path) and the Lightning Indexer's top-k. Owns only that arithmetic; the projections
// and the per-layer wiring are model/forward_compressor.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/rope.hpp"

namespace qf::ops {

// Pools one sequence's projected rows kv/gate [seq_len, width] into n = seq_len / rate entries
// [n, head_dim] (a trailing partial window is dropped, as transformers does without a cache):
//  - non-overlapping (HCA, width = head_dim): entry w = sum over the rate rows j of window w of
//    softmax_j(gate + ape[j]) * kv, per channel;
//  - overlapping (CSA, width = 2*head_dim): entry w pools 2*rate slots: the previous window's
//    first-half channels (Ca, gate + ape[:, :hd]) and window w's second half (Cb); window 0's
//    Ca slots are empty (weight 0).
// ape [rate, width] (width = head_dim, or 2*head_dim when overlapping) is added to the gate
// logits; norm [head_dim]. Then RMSNorm(norm weight) and RoPE on the trailing rope dims at position
// w * rate.
std::vector<float> compress_sequence(const float* kv, const float* gate, int64_t seq_len,
                                     const float* ape, const float* norm, int64_t rate,
                                     int64_t head_dim, bool overlapping, const RopeTable& rope,
                                     float eps);

// Indexer scores of one sequence: score[t][w] = sum_h weights[t,h] * relu(q[t,h] . k[w]) *
// index_head_dim^-0.5 (q, k roped; weights already scaled by index_n_heads^-0.5), then top-k
// among the causally complete entries; returns visible [seq_len, n_entries].
// Ties in score are broken toward the lower entry index.
std::vector<uint8_t> indexer_select(const float* q, const float* weights, const float* keys,
                                    int64_t seq_len, int64_t n_entries, int64_t n_heads,
                                    int64_t head_dim, int64_t rate, int64_t top_k);

}  // namespace qf::ops
