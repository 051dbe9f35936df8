// GpuDecoderLayer's attention block (model::attention_forward): q/kv projections with their
// norms and RoPE, the compressed entries (compressor pooling; on CSA layers the Lightning
// Indexer's top-k), sink attention and the grouped low-rank output projection. Does not own the
// kernels (kernels/forward/attention.cuh, forward_ops.cuh) or the workspace table.
#include <cmath>

#include "core/check.hpp"
#include "core/nvtx.hpp"
#include "gpu/gemm.hpp"
#include "gpu/gpu_decoder_layer.hpp"
#include "kernels/forward/attention.cuh"

namespace qf::gpu {

// model::attention_forward.
void GpuDecoderLayer::attention(const DeviceLayerWeights& w, int layer, int n_seqs, int seq_len,
                                uint32_t* amax_bits) {
  QF_NVTX_RANGE("layer: attention");
  const int64_t n_tokens = int64_t{n_seqs} * seq_len;
  const DeviceRope& rope = rope_of_layer(layer);
  timer_.mark("attn projections");
  attention_qkv(w, rope, n_tokens, seq_len, amax_bits);
  int64_t n_entries = 0;
  timer_.mark("compressor + indexer");
  if (w.has("attn.compressor.wkv.weight")) {
    compressed_entries(w, layer, n_seqs, seq_len, &n_entries);
  }
  timer_.mark("attention core");
  attention_core(w, rope, n_seqs, seq_len, n_entries);
  timer_.mark("attn projections");
  attention_output(w, layer, n_tokens, amax_bits);
}

// q: wq_a -> q_norm -> wq_b -> per-head unweighted RMSNorm; kv: wkv -> kv_norm (native
// attn.norm is the forward's attn.norm.weight too); RoPE on both.
void GpuDecoderLayer::attention_qkv(const DeviceLayerWeights& w, const DeviceRope& rope,
                                    int64_t n_tokens, int seq_len, uint32_t* amax_bits) {
  QF_NVTX_RANGE("layer: attention qkv");
  const int64_t T = n_tokens, dim = c_.hidden_size, nh = c_.num_attention_heads, hd = c_.head_dim,
                ql = c_.q_lora_rank;
  observe_and_cast(buf<float>(kX), T, dim, amax_bits, ObservationSlots::kAttnIn,
                   buf<uint16_t>(kXBf16, n_planes() * T * dim));
  linear(w, "attn.wq_a.weight", buf<uint16_t>(kXBf16), dim, buf<float>(kQRes, T * ql), T);
  rms_norm(buf<float>(kQRes), buf<float>(kQRes), w.f32("attn.q_norm.weight", ql), T, ql);
  observe_and_cast(buf<float>(kQRes), T, ql, amax_bits, ObservationSlots::kQResidual,
                   buf<uint16_t>(kQResBf16, n_planes() * T * ql));
  linear(w, "attn.wq_b.weight", buf<uint16_t>(kQResBf16), ql, buf<float>(kQ, T * nh * hd), T);
  rms_norm(buf<float>(kQ), buf<float>(kQ), nullptr, T * nh, hd);
  linear(w, "attn.wkv.weight", buf<uint16_t>(kXBf16), dim, buf<float>(kKv, T * hd), T);
  rms_norm(buf<float>(kKv), buf<float>(kKv), w.f32("attn.norm.weight", hd), T, hd);
  apply_rope(rope, buf<float>(kQ), T, nh, hd, seq_len);
  apply_rope(rope, buf<float>(kKv), T, 1, hd, seq_len);
}

// Sink attention over the window and the visible compressed entries; K = V carried RoPE into
// the output, so it is rotated back at the query position.
void GpuDecoderLayer::attention_core(const DeviceLayerWeights& w, const DeviceRope& rope,
                                     int n_seqs, int seq_len, int64_t n_entries) {
  QF_NVTX_RANGE("layer: attention core");
  const int64_t T = int64_t{n_seqs} * seq_len, nh = c_.num_attention_heads, hd = c_.head_dim;
  kernels::SinkAttentionParams a;
  a.q = buf<float>(kQ);
  a.kv = buf<float>(kKv);
  a.sinks = w.f32("attn.attn_sink", nh);
  a.compressed = n_entries > 0 ? buf<float>(kEntries) : nullptr;
  a.visible = n_entries > 0 ? buf<uint8_t>(kVisible) : nullptr;
  a.n_seqs = n_seqs;
  a.seq_len = seq_len;
  a.n_heads = nh;
  a.head_dim = hd;
  a.window = c_.sliding_window;
  a.n_entries = n_entries;
  a.scale = static_cast<float>(std::pow(static_cast<double>(hd), -0.5));
  a.out = buf<float>(kAttn, T * nh * hd);
  kernels::launch_sink_attention(a, stream_);
  apply_rope(rope, buf<float>(kAttn), T, nh, hd, seq_len, /*inverse=*/true);
}

// Grouped low-rank output projection wo_a (block-diagonal over o_groups), then wo_b.
void GpuDecoderLayer::attention_output(const DeviceLayerWeights& w, int layer, int64_t n_tokens,
                                       uint32_t* amax_bits) {
  QF_NVTX_RANGE("layer: attention output");
  const int64_t T = n_tokens, nh = c_.num_attention_heads, hd = c_.head_dim;
  const int64_t groups = c_.o_groups, group_in = nh * hd / groups, rank = c_.o_lora_rank;
  const DeviceLinear& wo_a = w.linear("attn.wo_a.weight");
  QF_CHECK(wo_a.n_rows == groups * rank && wo_a.n_cols == group_in, "layer", layer,
           "wo_a shape does not match o_groups / o_lora_rank");
  observe_and_cast(buf<float>(kAttn), T, nh * hd, amax_bits, ObservationSlots::kAttnOut,
                   buf<uint16_t>(kAttnBf16, n_planes() * T * nh * hd));
  const uint16_t* wo_a_bf16 =
      linear_as_bf16(wo_a, buf<uint16_t>(kWeightScratch, wo_a.n_rows * wo_a.n_cols), stream_);
  float* low = buf<float>(kLow, T * groups * rank);
  for (int p = 0; p < n_planes(); ++p) {
    gemm_bf16_grouped(cublas_, buf<uint16_t>(kAttnBf16) + p * T * nh * hd, wo_a_bf16, low, T, rank,
                      group_in, groups, p == 0 ? 0.0f : 1.0f);
  }
  observe_and_cast(buf<float>(kLow), T, groups * rank, amax_bits, ObservationSlots::kLowRank,
                   buf<uint16_t>(kLowBf16, n_planes() * T * groups * rank));
  linear(w, "attn.wo_b.weight", buf<uint16_t>(kLowBf16), groups * rank, buf<float>(kBlockOut), T);
}

// model::compressor_forward: pooled entries and their visibility (HCA causal, CSA indexer).
void GpuDecoderLayer::compressed_entries(const DeviceLayerWeights& w, int layer, int n_seqs,
                                         int seq_len, int64_t* n_entries) {
  QF_NVTX_RANGE("layer: compressor");
  const int64_t T = int64_t{n_seqs} * seq_len, hd = c_.head_dim, rate = c_.compress_ratio(layer);
  const bool csa = c_.attention_kind(layer) == model::AttentionKind::kCompressedSparse;
  const int64_t width = csa ? 2 * hd : hd;
  *n_entries = seq_len / rate;
  const DeviceLinear& cwkv = w.linear("attn.compressor.wkv.weight");
  QF_CHECK(cwkv.n_rows == width, "layer", layer, "compressor width", cwkv.n_rows, "expected",
           width);
  linear(w, "attn.compressor.wkv.weight", buf<uint16_t>(kXBf16), c_.hidden_size,
         buf<float>(kCkv, T * width), T);
  linear(w, "attn.compressor.wgate.weight", buf<uint16_t>(kXBf16), c_.hidden_size,
         buf<float>(kCgate, T * width), T);
  buf<uint8_t>(kVisible, T * *n_entries);
  if (*n_entries == 0) return;
  kernels::CompressPoolParams pool;
  pool.kv = buf<float>(kCkv);
  pool.gate = buf<float>(kCgate);
  pool.ape = w.f32("attn.compressor.ape", rate * width);
  pool.norm = w.f32("attn.compressor.norm.weight", hd);
  pool.n_seqs = n_seqs;
  pool.seq_len = seq_len;
  pool.rate = rate;
  pool.head_dim = hd;
  pool.overlapping = csa;
  pool.inv_freq = rope_compress_.inv_freq.get();
  pool.rope_dim = rope_compress_.rope_dim;
  pool.attention_scaling = rope_compress_.attention_scaling;
  pool.eps = static_cast<float>(c_.rms_norm_eps);
  pool.out = buf<float>(kEntries, n_seqs * *n_entries * hd);
  kernels::launch_compress_pool(pool, stream_);
  if (!csa) {
    kernels::launch_causal_visibility({n_seqs, seq_len, *n_entries, rate, buf<uint8_t>(kVisible)},
                                      stream_);
    return;
  }
  indexer_select(w, pool, n_seqs, seq_len, *n_entries);
}

// Lightning Indexer (CSA layers): its own overlapping compressor at index_head_dim (the pool
// parameters of the main compressor otherwise), queries from q_residual, weighted top-k of the
// entries into the visibility mask.
void GpuDecoderLayer::indexer_select(const DeviceLayerWeights& w,
                                     const kernels::CompressPoolParams& pool, int n_seqs,
                                     int seq_len, int64_t n_entries) {
  QF_NVTX_RANGE("layer: indexer");
  const int64_t T = int64_t{n_seqs} * seq_len, rate = pool.rate;
  const int64_t ihd = c_.index_head_dim, inh = c_.index_n_heads;
  linear(w, "attn.indexer.compressor.wkv.weight", buf<uint16_t>(kXBf16), c_.hidden_size,
         buf<float>(kIkv, T * 2 * ihd), T);
  linear(w, "attn.indexer.compressor.wgate.weight", buf<uint16_t>(kXBf16), c_.hidden_size,
         buf<float>(kIgate, T * 2 * ihd), T);
  linear(w, "attn.indexer.wq_b.weight", buf<uint16_t>(kQResBf16), c_.q_lora_rank,
         buf<float>(kIq, T * inh * ihd), T);
  linear(w, "attn.indexer.weights_proj.weight", buf<uint16_t>(kXBf16), c_.hidden_size,
         buf<float>(kIweights, T * inh), T);
  scale_f32(cublas_, buf<float>(kIweights), T * inh,
            static_cast<float>(std::pow(static_cast<double>(inh), -0.5)));
  QF_CHECK(rope_compress_.rope_dim <= ihd, "indexer head dim", ihd, "smaller than rope dim");
  apply_rope(rope_compress_, buf<float>(kIq), T, inh, ihd, seq_len);
  kernels::CompressPoolParams ipool = pool;
  ipool.kv = buf<float>(kIkv);
  ipool.gate = buf<float>(kIgate);
  ipool.ape = w.f32("attn.indexer.compressor.ape", rate * 2 * ihd);
  ipool.norm = w.f32("attn.indexer.compressor.norm.weight", ihd);
  ipool.head_dim = ihd;
  ipool.overlapping = true;
  ipool.out = buf<float>(kKeys, n_seqs * n_entries * ihd);
  kernels::launch_compress_pool(ipool, stream_);
  kernels::IndexerSelectParams sel;
  sel.q = buf<float>(kIq);
  sel.weights = buf<float>(kIweights);
  sel.keys = buf<float>(kKeys);
  sel.n_seqs = n_seqs;
  sel.seq_len = seq_len;
  sel.n_entries = n_entries;
  sel.n_heads = inh;
  sel.head_dim = ihd;
  sel.rate = rate;
  sel.top_k = c_.index_topk;
  sel.visible = buf<uint8_t>(kVisible);
  sel.workspace = buf<uint8_t>(kIndexerWorkspace,
                               static_cast<int64_t>(kernels::indexer_select_workspace_bytes(sel)));
  kernels::launch_indexer_select(sel, stream_);
}

}  // namespace qf::gpu
