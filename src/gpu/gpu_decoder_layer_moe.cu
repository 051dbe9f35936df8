// GpuDecoderLayer's MoE block (model::moe_forward) as named steps: route (FP32 router GEMM and
// top-k), dispatch (counting sort by expert, offsets to the host), gather (expert-sorted BF16
// rows and their amax), the expert cache decision, the experts on the lanes (routed in
// ascending id, shared on the main stream) and combine. Does not own the routing kernels
// (kernels/forward/moe_routing.cuh) or the workspace table.
#include <algorithm>
#include <string>

#include "core/check.hpp"
#include "core/nvtx.hpp"
#include "gpu/gemm.hpp"
#include "gpu/gpu_decoder_layer.hpp"
#include "kernels/forward/act_histogram.cuh"
#include "kernels/forward/forward_ops.cuh"
#include "kernels/forward/moe_routing.cuh"

namespace qf::gpu {

// model::moe_forward: router, dispatch, experts in ascending id, shared expert, combine.
void GpuDecoderLayer::moe(const DeviceLayerWeights& w, int layer, const int64_t* token_ids,
                          int64_t n_tokens, uint32_t* amax_bits,
                          std::vector<int64_t>* expert_tokens) {
  QF_NVTX_RANGE("layer: moe");
  timer_.mark("router + dispatch");
  observe_and_cast(buf<float>(kX), n_tokens, c_.hidden_size, amax_bits, ObservationSlots::kFfnIn,
                   buf<uint16_t>(kXBf16, n_planes() * n_tokens * c_.hidden_size));
  route(w, layer, token_ids, n_tokens);
  dispatch(layer, n_tokens);
  gather(n_tokens, amax_bits);
  prepare_expert_cache(w);
  timer_.mark("experts (routed + shared)");
  run_experts(w, n_tokens, amax_bits, expert_tokens);
  timer_.mark("combine");
  combine(n_tokens);
}

// model::route_tokens: the router GEMM in true FP32 (top-k must pick what the reference
// picks), then scores, top-k (or the tid2eid row on hash layers) and normalised weights.
void GpuDecoderLayer::route(const DeviceLayerWeights& w, int layer, const int64_t* token_ids,
                            int64_t n_tokens) {
  QF_NVTX_RANGE("layer: moe route");
  const int64_t dim = c_.hidden_size, n_exp = c_.n_routed_experts, k = c_.num_experts_per_tok;
  const bool hash = c_.is_hash_layer(layer);
  gemm_f32(cublas_, buf<float>(kX), w.f32("ffn.gate.weight", n_exp * dim),
           buf<float>(kLogits, n_tokens * n_exp), n_tokens, n_exp, dim);
  QF_CUDA_CHECK(cudaMemsetAsync(buf<int32_t>(kErrorFlag, 1), 0, sizeof(int32_t), stream_),
                "clear routing error flag");
  kernels::RouteParams route;
  route.logits = buf<float>(kLogits);
  route.gate_bias = hash ? nullptr : w.f32("ffn.gate.bias", n_exp);
  route.tid2eid = hash ? w.tid2eid.get() : nullptr;
  route.token_ids = token_ids;
  route.n_tokens = n_tokens;
  route.n_experts = n_exp;
  route.top_k = k;
  route.vocab = c_.vocab_size;
  route.scoring = c_.scoring_func == ops::ScoringFunc::kSigmoid
                      ? kernels::RouterScoring::kSigmoid
                      : kernels::RouterScoring::kSqrtSoftplus;
  route.routed_scaling = static_cast<float>(c_.routed_scaling_factor);
  route.experts = buf<int32_t>(kExperts, n_tokens * k);
  route.weights = buf<float>(kRouteWeights, n_tokens * k);
  route.error_flag = buf<int32_t>(kErrorFlag);
  QF_CHECK(!hash || w.tid2eid.n_elems() >= static_cast<size_t>(c_.vocab_size * k), "layer", layer,
           "is hash-routed but has no tid2eid table on the GPU");
  kernels::launch_route(route, stream_);
}

// model::moe_forward's torch.where order: rows sorted by expert, slot-major within one. The
// per-expert offsets and the error flag come to the host (the one sync of the layer): the
// experts' GEMM sizes depend on them.
void GpuDecoderLayer::dispatch(int layer, int64_t n_tokens) {
  QF_NVTX_RANGE("layer: moe dispatch");
  const int64_t n_exp = c_.n_routed_experts, k = c_.num_experts_per_tok, n_rows = n_tokens * k;
  kernels::MoeDispatchParams d;
  d.experts = buf<int32_t>(kExperts);
  d.n_tokens = n_tokens;
  d.top_k = k;
  d.n_experts = n_exp;
  d.expert_offsets = buf<int32_t>(kOffsets, n_exp + 1);
  d.row_token = buf<int32_t>(kRowToken, n_rows);
  d.row_slot = buf<int32_t>(kRowSlot, n_rows);
  d.token_row = buf<int32_t>(kTokenRow, n_rows);
  d.error_flag = buf<int32_t>(kErrorFlag);
  d.workspace = buf<uint8_t>(kDispatchWorkspace,
                             static_cast<int64_t>(kernels::moe_dispatch_workspace_bytes(d)));
  kernels::launch_moe_dispatch(d, stream_);
  host_offsets_.assign(static_cast<size_t>(n_exp + 2), 0);
  QF_CUDA_CHECK(cudaMemcpyAsync(host_offsets_.data(), buf<int32_t>(kOffsets), (n_exp + 1) * 4,
                                cudaMemcpyDeviceToHost, stream_),
                "routing offsets download");
  QF_CUDA_CHECK(cudaMemcpyAsync(host_offsets_.data() + n_exp + 1, buf<int32_t>(kErrorFlag), 4,
                                cudaMemcpyDeviceToHost, stream_),
                "routing error flag download");
  QF_CUDA_CHECK(cudaStreamSynchronize(stream_), "layer", layer, "routing");
  QF_CHECK(host_offsets_[n_exp + 1] == 0, "layer", layer,
           "routing: a token id outside the vocabulary or an expert id outside [0,", n_exp,
           ") (tid2eid)");
}

// The experts' input rows in BF16, expert-sorted, with each expert's input amax; histograms
// count the FP32 source rows in the same order.
void GpuDecoderLayer::gather(int64_t n_tokens, uint32_t* amax_bits) {
  QF_NVTX_RANGE("layer: moe gather");
  const int64_t dim = c_.hidden_size, n_exp = c_.n_routed_experts;
  const int64_t n_rows = n_tokens * c_.num_experts_per_tok;
  kernels::MoeGatherParams g;
  g.x = buf<float>(kX);
  g.row_token = buf<int32_t>(kRowToken);
  g.expert_offsets = buf<int32_t>(kOffsets);
  g.n_rows = n_rows;
  g.dim = dim;
  g.n_experts = n_exp;
  g.rows_bf16 = buf<uint16_t>(kRowsBf16, n_planes() * n_rows * dim);
  g.amax_bits = amax_bits + ObservationSlots::expert_in(0);
  kernels::launch_moe_gather(g, stream_);
  write_lower_planes(g.x, g.row_token, g.expert_offsets + n_exp, n_rows, dim, g.rows_bf16,
                     n_rows * dim, stream_);
  if (hist_ == nullptr) return;
  kernels::ActHistParams h;
  h.x = buf<float>(kX);
  h.n_rows = n_rows;
  h.n_cols = dim;
  h.row_index = buf<int32_t>(kRowToken);
  h.segment_offsets = buf<int32_t>(kOffsets);
  h.n_segments = n_exp;
  h.hist = hist_ + int64_t{ObservationSlots::expert_in(0)} * numerics::kActHistBins;
  kernels::launch_act_hist(h, stream_);
}

// Decided once per layer (a new weights id): the routed experts' BF16 weights are kept for the
// layer's later batches when the policy allows it and the GPU keeps a quarter free for the
// activations of later, larger batches; filled as experts get rows.
void GpuDecoderLayer::prepare_expert_cache(const DeviceLayerWeights& w) {
  if (cache_weights_ == w.id) return;
  cache_weights_ = w.id;
  const int64_t n_exp = c_.n_routed_experts;
  const uint64_t need =
      uint64_t(n_exp) * 3 * c_.moe_intermediate_size * c_.hidden_size * sizeof(uint16_t);
  size_t free_bytes = 0, total_bytes = 0;
  QF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  const uint64_t have = ws_.n_elems(kExpertCache) * sizeof(uint16_t);
  cache_on_ = policy_.expert_cache && (have >= need || free_bytes + have > need + total_bytes / 4);
  if (cache_on_) buf<uint16_t>(kExpertCache, static_cast<int64_t>(need / sizeof(uint16_t)));
  expert_cached_.assign(static_cast<size_t>(n_exp), 0);
}

// Experts are small GEMMs (V4-Flash: ~400 rows each at 16k tokens) that fill a fraction of the
// SMs: run them round-robin on side lanes, concurrently, while the shared expert runs on the
// main stream. Each expert writes its own rows of y and its own amax slot.
void GpuDecoderLayer::run_experts(const DeviceLayerWeights& w, int64_t n_tokens,
                                  uint32_t* amax_bits, std::vector<int64_t>* expert_tokens) {
  QF_NVTX_RANGE("layer: moe experts");
  const int64_t dim = c_.hidden_size, n_exp = c_.n_routed_experts;
  int64_t max_rows = n_tokens;  // the shared expert runs on every token
  for (int64_t e = 0; e < n_exp; ++e) {
    max_rows = std::max<int64_t>(max_rows, host_offsets_[e + 1] - host_offsets_[e]);
  }
  float* y = buf<float>(kY, n_tokens * c_.num_experts_per_tok * dim);
  QF_CUDA_CHECK(cudaEventRecord(rows_ready_.get(), stream_), "experts fork");
  for (auto& lane : lanes_) {
    QF_CUDA_CHECK(cudaStreamWaitEvent(lane.stream, rows_ready_.get(), 0), "experts fork");
  }
  size_t next_lane = 0;
  for (int64_t e = 0; e < n_exp; ++e) {
    const int64_t begin = host_offsets_[e], m = host_offsets_[e + 1] - begin;
    if (m == 0) continue;
    (*expert_tokens)[e] += m;
    ExpertLane& lane = lanes_[next_lane++ % lanes_.size()];
    const ExpertCall call{
        "ffn.experts." + std::to_string(e),
        buf<uint16_t>(kRowsBf16) + begin * dim,
        n_tokens * c_.num_experts_per_tok * dim,
        m,
        ObservationSlots::expert_hidden(static_cast<int>(e), static_cast<int>(n_exp)),
        y + begin * dim,
        cache_on_ ? e : -1};
    expert_mlp(w, lane, call, max_rows, amax_bits);
  }
  const ExpertCall shared{"ffn.shared_experts",
                          buf<uint16_t>(kXBf16),
                          n_tokens * dim,
                          n_tokens,
                          ObservationSlots::kSharedHidden,
                          buf<float>(kSharedOut, n_tokens * dim),
                          -1};
  expert_mlp(w, main_lane_, shared, max_rows, amax_bits);
  for (auto& lane : lanes_) {
    QF_CUDA_CHECK(cudaEventRecord(lane.done.get(), lane.stream), "experts join");
    QF_CUDA_CHECK(cudaStreamWaitEvent(stream_, lane.done.get(), 0), "experts join");
  }
}

// One expert MLP on `lane`: y = w2(swiglu(w1 x, w3 x)), its weights from the expert cache
// (dequantized there on first use) or dequantized into the lane's scratch.
void GpuDecoderLayer::expert_mlp(const DeviceLayerWeights& w, ExpertLane& lane,
                                 const ExpertCall& call, int64_t max_rows, uint32_t* amax_bits) {
  const int64_t dim = c_.hidden_size, inter = c_.moe_intermediate_size;
  float* gate_up = lane_buf<float>(lane, kGateUp, max_rows * 2 * inter);
  uint16_t* h = lane_buf<uint16_t>(lane, kHBf16, n_planes() * max_rows * inter);
  uint16_t* w13_e = nullptr;
  uint16_t* w2_e = nullptr;
  bool fill = true;
  if (call.cached >= 0) {
    w13_e = buf<uint16_t>(kExpertCache) + call.cached * 3 * inter * dim;
    w2_e = w13_e + 2 * inter * dim;
    fill = !expert_cached_[call.cached];
    expert_cached_[call.cached] = 1;
  } else {
    w13_e = lane_buf<uint16_t>(lane, kW13, 2 * inter * dim);
    w2_e = lane_buf<uint16_t>(lane, kW2, dim * inter);
  }
  if (fill) {
    weight_into(w, call.prefix + ".w1.weight", w13_e, lane.stream);
    weight_into(w, call.prefix + ".w3.weight", w13_e + inter * dim, lane.stream);
    weight_into(w, call.prefix + ".w2.weight", w2_e, lane.stream);
  }
  for (int p = 0; p < n_planes(); ++p) {
    lane.planned->bf16(*lane.cublas, call.x_rows + p * call.plane_stride, dim, w13_e, gate_up,
                       2 * inter, call.m, 2 * inter, dim, p == 0 ? 0.0f : 1.0f);
  }
  kernels::SwigluParams s;
  s.gate_up = gate_up;
  s.n_rows = call.m;
  s.inter = inter;
  s.limit = static_cast<float>(c_.swiglu_limit);
  s.out_bf16 = h;
  s.amax_bits = amax_bits + call.hidden_slot;
  // Histograms count the FP32 SwiGLU output (what the amax sees), and the lower planes are cut
  // from it, so keep it for them.
  if (hist_ != nullptr || n_planes() > 1) s.out = lane_buf<float>(lane, kHF32, max_rows * inter);
  kernels::launch_swiglu(s, lane.stream);
  if (hist_ != nullptr) observe_hist(s.out, call.m, inter, call.hidden_slot, lane.stream);
  write_lower_planes(s.out, nullptr, nullptr, call.m, inter, h, max_rows * inter, lane.stream);
  for (int p = 0; p < n_planes(); ++p) {
    lane.planned->bf16(*lane.cublas, h + p * max_rows * inter, inter, w2_e, call.y, dim, call.m,
                       dim, inter, p == 0 ? 0.0f : 1.0f);
  }
}

// Per token: the routed experts' rows scaled by their weights in ascending expert order, plus
// the shared expert (model::moe_forward's accumulation order).
void GpuDecoderLayer::combine(int64_t n_tokens) {
  QF_NVTX_RANGE("layer: moe combine");
  kernels::MoeCombineParams comb;
  comb.y = buf<float>(kY);
  comb.experts = buf<int32_t>(kExperts);
  comb.weights = buf<float>(kRouteWeights);
  comb.token_row = buf<int32_t>(kTokenRow);
  comb.shared = buf<float>(kSharedOut);
  comb.n_tokens = n_tokens;
  comb.top_k = c_.num_experts_per_tok;
  comb.dim = c_.hidden_size;
  comb.out = buf<float>(kBlockOut);
  kernels::launch_moe_combine(comb, stream_);
}

}  // namespace qf::gpu
