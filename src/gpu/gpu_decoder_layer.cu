// GpuDecoderLayer (see the header): set-up, the workspace table, the shared helpers, mHC and the
// layer's op sequence; the attention and MoE blocks are gpu_decoder_layer_attention.cu and
// gpu_decoder_layer_moe.cu. Each step names the CPU reference function it mirrors.
#include <iterator>
#include <regex>

#include "core/check.hpp"
#include "core/nvtx.hpp"
#include "gpu/gemm.hpp"
#include "gpu/gpu_decoder_layer.hpp"
#include "kernels/forward/act_histogram.cuh"
#include "kernels/forward/bf16_planes.cuh"
#include "kernels/forward/forward_ops.cuh"
#include "ops/rope.hpp"

namespace qf::gpu {
namespace {

// ---- the workspace table: every activation buffer of the layer, by name and element size ----
struct BufferSpec {
  int id;
  const char* name;
  size_t elem_bytes;
};
constexpr size_t kF32 = sizeof(float), kBf16 = sizeof(uint16_t), kI32 = sizeof(int32_t), kU8 = 1;

}  // namespace

int ObservationSlots::of(const std::string& linear_name, int layer, int n_experts) {
  const std::string prefix = "layers." + std::to_string(layer) + ".";
  QF_CHECK(linear_name.compare(0, prefix.size(), prefix) == 0, "linear", linear_name,
           "is not in layer", layer);
  const std::string n = linear_name.substr(prefix.size());
  if (n == "attn.wq_a" || n == "attn.wkv" || n == "attn.compressor.wkv" ||
      n == "attn.compressor.wgate" || n == "attn.indexer.compressor.wkv" ||
      n == "attn.indexer.compressor.wgate" || n == "attn.indexer.weights_proj") {
    return kAttnIn;
  }
  if (n == "attn.wq_b" || n == "attn.indexer.wq_b") return kQResidual;
  if (n == "attn.wo_a") return kAttnOut;
  if (n == "attn.wo_b") return kLowRank;
  if (n == "ffn.gate" || n == "ffn.shared_experts.w1" || n == "ffn.shared_experts.w3") {
    return kFfnIn;
  }
  if (n == "ffn.shared_experts.w2") return kSharedHidden;
  static const std::regex expert_re(R"(ffn\.experts\.(\d+)\.(w1|w2|w3))");
  std::smatch m;
  if (std::regex_match(n, m, expert_re)) {
    const int e = std::stoi(m[1].str());
    QF_CHECK(e < n_experts, "linear", linear_name, "names expert", e, "of", n_experts);
    return m[2].str() == "w2" ? expert_hidden(e, n_experts) : expert_in(e);
  }
  QF_FAIL("the CUDA forward does not run linear", linear_name);
}

// The one buffer list: DeviceWorkspace allocates from it and workspace() reports it.
void GpuDecoderLayer::declare_workspace() {
  // clang-format off
  static constexpr BufferSpec kBufferTable[] = {
      {kFlat, "mhc.flat", kF32},          {kMixes, "mhc.mixes", kF32},
      {kPre, "mhc.pre", kF32},            {kPost, "mhc.post", kF32},
      {kComb, "mhc.comb", kF32},          {kX, "x", kF32},
      {kBlockOut, "block_out", kF32},     {kXBf16, "x_bf16", kBf16},
      {kQResBf16, "q_residual_bf16", kBf16}, {kAttnBf16, "attn_out_bf16", kBf16},
      {kLowBf16, "wo_a_out_bf16", kBf16}, {kWeightScratch, "weight_bf16", kBf16},
      {kQRes, "q_residual", kF32},        {kQ, "q", kF32},
      {kKv, "kv", kF32},                  {kAttn, "attn_out", kF32},
      {kLow, "wo_a_out", kF32},           {kCkv, "compressor.kv", kF32},
      {kCgate, "compressor.gate", kF32},  {kEntries, "compressor.entries", kF32},
      {kIkv, "indexer.kv", kF32},         {kIgate, "indexer.gate", kF32},
      {kIq, "indexer.q", kF32},           {kIweights, "indexer.weights", kF32},
      {kKeys, "indexer.keys", kF32},      {kVisible, "visible", kU8},
      {kIndexerWorkspace, "indexer.workspace", kU8},
      {kLogits, "router.logits", kF32},   {kRouteWeights, "router.weights", kF32},
      {kExperts, "router.experts", kI32}, {kOffsets, "dispatch.offsets", kI32},
      {kRowToken, "dispatch.row_token", kI32}, {kRowSlot, "dispatch.row_slot", kI32},
      {kTokenRow, "dispatch.token_row", kI32}, {kErrorFlag, "routing.error_flag", kI32},
      {kDispatchWorkspace, "dispatch.workspace", kU8}, {kRowsBf16, "experts.rows_bf16", kBf16},
      {kY, "experts.y", kF32},            {kSharedOut, "shared_expert.y", kF32},
      {kExpertCache, "expert_cache", kBf16},
  };
  static constexpr BufferSpec kLaneTable[] = {
      {kGateUp, "gate_up", kF32}, {kHBf16, "h_bf16", kBf16}, {kW13, "w13_bf16", kBf16},
      {kW2, "w2_bf16", kBf16},    {kHF32, "h_f32", kF32},
  };
  // clang-format on
  static_assert(std::size(kBufferTable) == kNumBufs && std::size(kLaneTable) == kNumLaneBufs,
                "one table entry per buffer");
  for (const BufferSpec& b : kBufferTable) {
    QF_CHECK(ws_.declare(b.name, b.elem_bytes) == b.id, "workspace table out of order at", b.name);
  }
  auto declare_lane = [&](ExpertLane& lane, const std::string& lane_name) {
    lane.buf_base = static_cast<int>(ws_.entries().size());
    for (const BufferSpec& b : kLaneTable) {
      QF_CHECK(ws_.declare(lane_name + "." + b.name, b.elem_bytes) == lane.buf_base + b.id,
               "workspace lane table out of order at", b.name);
    }
  };
  declare_lane(main_lane_, "shared_lane");
  for (size_t i = 0; i < lanes_.size(); ++i) declare_lane(lanes_[i], "lane" + std::to_string(i));
}

GpuDecoderLayer::GpuDecoderLayer(const model::ModelConfig& config, cudaStream_t stream,
                                 DecoderLayerPolicy policy)
    : c_(config),
      stream_(stream),
      policy_(policy),
      cublas_(stream),
      timer_(stream, policy.profile_sections) {
  c_.require_reference_forward();
  upload_rope(c_.rope_main, &rope_main_);
  upload_rope(c_.rope_compress, &rope_compress_);
  main_lane_.stream = stream_;
  main_lane_.cublas = &cublas_;
  main_lane_.planned = std::make_unique<PlannedGemm>(stream_);
  lanes_.resize(kExpertLanes);
  for (auto& lane : lanes_) {
    lane.own_stream = std::make_unique<CudaStream>();
    lane.stream = lane.own_stream->get();
    lane.own_cublas = std::make_unique<CublasHandle>(lane.stream);
    lane.cublas = lane.own_cublas.get();
    lane.planned = std::make_unique<PlannedGemm>(lane.stream);
  }
  declare_workspace();
}

void GpuDecoderLayer::upload_rope(const ops::RopeParams& params, DeviceRope* out) {
  const ops::RopeTable t = ops::make_rope_table(params, c_.head_dim, c_.max_position_embeddings);
  out->rope_dim = t.rope_dim;
  out->attention_scaling = t.attention_scaling;
  out->inv_freq.grow(t.inv_freq.size());
  QF_CUDA_CHECK(cudaMemcpy(out->inv_freq.get(), t.inv_freq.data(), t.inv_freq.size() * 4,
                           cudaMemcpyHostToDevice),
                "RoPE table upload");
}

const GpuDecoderLayer::DeviceRope& GpuDecoderLayer::rope_of_layer(int layer) const {
  return c_.attention_kind(layer) == model::AttentionKind::kSliding ? rope_main_ : rope_compress_;
}

void GpuDecoderLayer::rms_norm(const float* x, float* out, const float* weight, int64_t n_rows,
                               int64_t n_cols) {
  kernels::RmsNormParams p;
  p.x = x;
  p.out = out;
  p.weight = weight;
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.eps = static_cast<float>(c_.rms_norm_eps);
  kernels::launch_rms_norm(p, stream_);
}

void GpuDecoderLayer::apply_rope(const DeviceRope& rope, float* x, int64_t n_rows, int64_t n_vecs,
                                 int64_t dim, int64_t seq_len, bool inverse) {
  kernels::RopeParams r;
  r.x = x;
  r.n_rows = n_rows;
  r.n_vecs = n_vecs;
  r.dim = dim;
  r.inv_freq = rope.inv_freq.get();
  r.rope_dim = rope.rope_dim;
  r.attention_scaling = rope.attention_scaling;
  r.period = seq_len;
  r.position_step = 1;
  r.inverse = inverse;
  kernels::launch_rope(r, stream_);
}

void GpuDecoderLayer::observe_and_cast(const float* x, int64_t n_rows, int64_t n_cols,
                                       uint32_t* amax_bits, int slot, uint16_t* out_bf16) {
  kernels::AmaxCastParams p;
  p.x = x;
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.amax_bits = amax_bits + slot;
  p.out_bf16 = out_bf16;
  kernels::launch_amax_cast(p, stream_);
  write_lower_planes(x, nullptr, nullptr, n_rows, n_cols, out_bf16, n_rows * n_cols, stream_);
  observe_hist(x, n_rows, n_cols, slot, stream_);
}

void GpuDecoderLayer::write_lower_planes(const float* x, const int32_t* row_index,
                                         const int32_t* row_count, int64_t n_rows, int64_t n_cols,
                                         uint16_t* out, int64_t plane_stride, cudaStream_t stream) {
  if (n_planes() == 1 || n_rows == 0) return;
  kernels::Bf16PlanesParams p;
  p.x = x;
  p.row_index = row_index;
  p.row_count = row_count;
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.mid = out + plane_stride;
  p.lo = out + 2 * plane_stride;
  kernels::launch_bf16_planes(p, stream);
}

void GpuDecoderLayer::observe_hist(const float* x, int64_t n_rows, int64_t n_cols, int slot,
                                   cudaStream_t stream) {
  if (hist_ == nullptr) return;
  kernels::ActHistParams p;
  p.x = x;
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.hist = hist_ + int64_t{slot} * numerics::kActHistBins;
  kernels::launch_act_hist(p, stream);
}

void GpuDecoderLayer::weight_into(const DeviceLayerWeights& w, const std::string& name,
                                  uint16_t* out, cudaStream_t stream) {
  const DeviceLinear& lin = w.linear(name);
  const uint16_t* got = linear_as_bf16(lin, out, stream);
  if (got != out) {
    QF_CUDA_CHECK(
        cudaMemcpyAsync(out, got, lin.n_rows * lin.n_cols * 2, cudaMemcpyDeviceToDevice, stream),
        "copy of BF16 weight", name);
  }
}

void GpuDecoderLayer::linear(const DeviceLayerWeights& w, const std::string& name,
                             const uint16_t* x, int64_t ldx, float* y, int64_t m) {
  const DeviceLinear& lin = w.linear(name);
  uint16_t* scratch = buf<uint16_t>(kWeightScratch, lin.n_rows * lin.n_cols);
  const uint16_t* weight = linear_as_bf16(lin, scratch, stream_);
  for (int p = 0; p < n_planes(); ++p) {
    gemm_bf16(cublas_, x + p * m * ldx, ldx, weight, y, lin.n_rows, m, lin.n_rows, lin.n_cols,
              p == 0 ? 0.0f : 1.0f);
  }
}

// model::hc_pre: mixes = rms(hidden flattened) * fn^T, then pre/post/comb and the collapse.
void GpuDecoderLayer::hc_pre(const DeviceLayerWeights& w, const std::string& site,
                             const float* hidden, int64_t n_tokens) {
  QF_NVTX_RANGE("layer: mhc pre");
  const int64_t hc = c_.hc_mult, dim = c_.hidden_size, width = hc * dim, mix = (2 + hc) * hc;
  rms_norm(hidden, buf<float>(kFlat, n_tokens * width), nullptr, n_tokens, width);
  gemm_f32(cublas_, buf<float>(kFlat), w.f32(site + "_fn", mix * width),
           buf<float>(kMixes, n_tokens * mix), n_tokens, mix, width);
  kernels::HcPreParams p;
  p.mixes = buf<float>(kMixes);
  p.hidden = hidden;
  p.base = w.f32(site + "_base", mix);
  p.scale = w.f32(site + "_scale", 3);
  p.n_tokens = n_tokens;
  p.hc = hc;
  p.dim = dim;
  p.sinkhorn_iters = c_.hc_sinkhorn_iters;
  p.hc_eps = static_cast<float>(c_.hc_eps);
  p.pre = buf<float>(kPre, n_tokens * hc);
  p.post = buf<float>(kPost, n_tokens * hc);
  p.comb = buf<float>(kComb, n_tokens * hc * hc);
  p.collapsed = buf<float>(kX, n_tokens * dim);
  kernels::launch_hc_pre(p, stream_);
}

void GpuDecoderLayer::hc_post(float* hidden, int64_t n_tokens) {
  QF_NVTX_RANGE("layer: mhc post");
  kernels::HcPostParams p;
  p.post = buf<float>(kPost);
  p.comb = buf<float>(kComb);
  p.block_out = buf<float>(kBlockOut);
  p.hidden = hidden;
  p.n_tokens = n_tokens;
  p.hc = c_.hc_mult;
  p.dim = c_.hidden_size;
  kernels::launch_hc_post(p, stream_);
}

void GpuDecoderLayer::forward(const DeviceLayerWeights& w, int layer, float* hidden,
                              const int64_t* token_ids, int n_seqs, int seq_len,
                              uint32_t* amax_bits, std::vector<int64_t>* expert_tokens,
                              int64_t* hist_slots) {
  QF_NVTX_RANGE("layer forward");
  hist_ = hist_slots;
  QF_CHECK(n_seqs > 0 && seq_len > 0, "GPU layer forward: empty batch", n_seqs, "x", seq_len);
  QF_CHECK(w.layer == layer, "GPU layer forward: weights of layer", w.layer, "given for layer",
           layer);
  const int64_t n_tokens = int64_t{n_seqs} * seq_len, dim = c_.hidden_size;
  buf<float>(kBlockOut, n_tokens * dim);

  timer_.mark("mHC + norms");
  hc_pre(w, "hc_attn", hidden, n_tokens);
  rms_norm(buf<float>(kX), buf<float>(kX), w.f32("attn_norm.weight", dim), n_tokens, dim);
  attention(w, layer, n_seqs, seq_len, amax_bits);
  timer_.mark("mHC + norms");
  hc_post(hidden, n_tokens);

  hc_pre(w, "hc_ffn", hidden, n_tokens);
  rms_norm(buf<float>(kX), buf<float>(kX), w.f32("ffn_norm.weight", dim), n_tokens, dim);
  moe(w, layer, token_ids, n_tokens, amax_bits, expert_tokens);
  timer_.mark("mHC + norms");
  hc_post(hidden, n_tokens);
  timer_.flush();
}

}  // namespace qf::gpu
