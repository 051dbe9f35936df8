// GpuDecoderLayer: model::decoder_layer_forward's op sequence on the GPU (see the header).
// Each step names the CPU reference function it mirrors.
#include "gpu/gpu_decoder_layer.hpp"

#include <cmath>
#include <cstdlib>
#include <regex>

#include "core/check.hpp"
#include "gpu/gemm.hpp"
#include "kernels/forward/act_histogram.cuh"
#include "kernels/forward/attention.cuh"
#include "kernels/forward/forward_ops.cuh"
#include "kernels/forward/moe_routing.cuh"
#include "ops/rope.hpp"

namespace qf::gpu {
namespace {

template <typename T>
T* sized(DeviceBuffer<T>& buf, int64_t n_elems) {
  buf.grow(static_cast<size_t>(n_elems > 0 ? n_elems : 1));
  return buf.get();
}

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

GpuDecoderLayer::GpuDecoderLayer(const model::ModelConfig& config, cudaStream_t stream)
    : c_(config), stream_(stream), cublas_(stream), timer_(stream) {
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

uint64_t GpuDecoderLayer::workspace_bytes() const {
  uint64_t n = 0;
  for (const auto* b : {&flat_, &mixes_, &pre_, &post_, &comb_, &x_, &block_out_, &q_res_, &q_,
                        &kv_, &attn_, &low_, &ckv_, &cgate_, &entries_, &ikv_, &igate_, &iq_,
                        &iweights_, &keys_, &logits_, &route_weights_, &y_, &shared_out_}) {
    n += b->n_elems() * sizeof(float);
  }
  for (const auto* b : {&x_bf16_, &q_res_bf16_, &attn_bf16_, &low_bf16_, &weight_scratch_,
                        &rows_bf16_, &expert_cache_}) {
    n += b->n_elems() * sizeof(uint16_t);
  }
  for (const ExpertLane* lane : {&main_lane_}) {
    n += (lane->gate_up.n_elems() + lane->h_f32.n_elems()) * 4 +
         (lane->h_bf16.n_elems() + lane->w13.n_elems() + lane->w2.n_elems()) * 2;
  }
  for (const ExpertLane& lane : lanes_) {
    n += (lane.gate_up.n_elems() + lane.h_f32.n_elems()) * 4 +
         (lane.h_bf16.n_elems() + lane.w13.n_elems() + lane.w2.n_elems()) * 2;
  }
  for (const auto* b : {&experts_, &offsets_, &row_token_, &row_slot_, &token_row_, &error_flag_}) {
    n += b->n_elems() * sizeof(int32_t);
  }
  n += visible_.n_elems() + indexer_workspace_.n_elems() + dispatch_workspace_.n_elems();
  return n;
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
  observe_hist(x, n_rows, n_cols, slot, stream_);
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
    QF_CUDA_CHECK(cudaMemcpyAsync(out, got, lin.n_rows * lin.n_cols * 2, cudaMemcpyDeviceToDevice,
                                  stream),
                  "copy of BF16 weight", name);
  }
}

void GpuDecoderLayer::linear(const DeviceLayerWeights& w, const std::string& name,
                             const uint16_t* x, int64_t ldx, float* y, int64_t m) {
  const DeviceLinear& lin = w.linear(name);
  uint16_t* scratch = sized(weight_scratch_, lin.n_rows * lin.n_cols);
  const uint16_t* weight = linear_as_bf16(lin, scratch, stream_);
  gemm_bf16(cublas_, x, ldx, weight, y, lin.n_rows, m, lin.n_rows, lin.n_cols);
}

// model::hc_pre: mixes = rms(hidden flattened) * fn^T, then pre/post/comb and the collapse.
void GpuDecoderLayer::hc_pre(const DeviceLayerWeights& w, const std::string& site,
                             const float* hidden, int64_t n_tokens) {
  const int64_t hc = c_.hc_mult, dim = c_.hidden_size, width = hc * dim, mix = (2 + hc) * hc;
  kernels::RmsNormParams norm;
  norm.x = hidden;
  norm.out = sized(flat_, n_tokens * width);
  norm.n_rows = n_tokens;
  norm.n_cols = width;
  norm.eps = static_cast<float>(c_.rms_norm_eps);
  kernels::launch_rms_norm(norm, stream_);
  gemm_f32(cublas_, flat_.get(), w.f32(site + "_fn", mix * width), sized(mixes_, n_tokens * mix),
           n_tokens, mix, width);
  kernels::HcPreParams p;
  p.mixes = mixes_.get();
  p.hidden = hidden;
  p.base = w.f32(site + "_base", mix);
  p.scale = w.f32(site + "_scale", 3);
  p.n_tokens = n_tokens;
  p.hc = hc;
  p.dim = dim;
  p.sinkhorn_iters = c_.hc_sinkhorn_iters;
  p.hc_eps = static_cast<float>(c_.hc_eps);
  p.pre = sized(pre_, n_tokens * hc);
  p.post = sized(post_, n_tokens * hc);
  p.comb = sized(comb_, n_tokens * hc * hc);
  p.collapsed = sized(x_, n_tokens * dim);
  kernels::launch_hc_pre(p, stream_);
}

void GpuDecoderLayer::hc_post(float* hidden, int64_t n_tokens) {
  kernels::HcPostParams p;
  p.post = post_.get();
  p.comb = comb_.get();
  p.block_out = block_out_.get();
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
  hist_ = hist_slots;
  QF_CHECK(n_seqs > 0 && seq_len > 0, "GPU layer forward: empty batch", n_seqs, "x", seq_len);
  QF_CHECK(w.layer == layer, "GPU layer forward: weights of layer", w.layer, "given for layer",
           layer);
  const int64_t n_tokens = int64_t{n_seqs} * seq_len, dim = c_.hidden_size;
  const float eps = static_cast<float>(c_.rms_norm_eps);
  auto norm_x = [&](const char* weight) {
    kernels::RmsNormParams p;
    p.x = x_.get();
    p.out = x_.get();
    p.weight = w.f32(weight, dim);
    p.n_rows = n_tokens;
    p.n_cols = dim;
    p.eps = eps;
    kernels::launch_rms_norm(p, stream_);
  };
  sized(block_out_, n_tokens * dim);

  timer_.mark("mHC + norms");
  hc_pre(w, "hc_attn", hidden, n_tokens);
  norm_x("attn_norm.weight");
  attention(w, layer, n_seqs, seq_len, amax_bits);
  timer_.mark("mHC + norms");
  hc_post(hidden, n_tokens);

  hc_pre(w, "hc_ffn", hidden, n_tokens);
  norm_x("ffn_norm.weight");
  moe(w, layer, token_ids, n_tokens, amax_bits, expert_tokens);
  timer_.mark("mHC + norms");
  hc_post(hidden, n_tokens);
  timer_.flush();
}

// model::attention_forward.
void GpuDecoderLayer::attention(const DeviceLayerWeights& w, int layer, int n_seqs, int seq_len,
                                uint32_t* amax_bits) {
  const int64_t T = int64_t{n_seqs} * seq_len, dim = c_.hidden_size, nh = c_.num_attention_heads,
                hd = c_.head_dim, ql = c_.q_lora_rank;
  const float eps = static_cast<float>(c_.rms_norm_eps);
  const DeviceRope& rope = rope_of_layer(layer);

  timer_.mark("attn projections");
  observe_and_cast(x_.get(), T, dim, amax_bits, ObservationSlots::kAttnIn,
                   sized(x_bf16_, T * dim));
  // q: wq_a -> q_norm -> wq_b -> per-head unweighted RMSNorm.
  linear(w, "attn.wq_a.weight", x_bf16_.get(), dim, sized(q_res_, T * ql), T);
  kernels::RmsNormParams qn;
  qn.x = q_res_.get();
  qn.out = q_res_.get();
  qn.weight = w.f32("attn.q_norm.weight", ql);
  qn.n_rows = T;
  qn.n_cols = ql;
  qn.eps = eps;
  kernels::launch_rms_norm(qn, stream_);
  observe_and_cast(q_res_.get(), T, ql, amax_bits, ObservationSlots::kQResidual,
                   sized(q_res_bf16_, T * ql));
  linear(w, "attn.wq_b.weight", q_res_bf16_.get(), ql, sized(q_, T * nh * hd), T);
  kernels::RmsNormParams hn;
  hn.x = q_.get();
  hn.out = q_.get();
  hn.n_rows = T * nh;
  hn.n_cols = hd;
  hn.eps = eps;
  kernels::launch_rms_norm(hn, stream_);
  // kv: wkv -> kv_norm (native attn.norm is the forward's attn.norm.weight too).
  linear(w, "attn.wkv.weight", x_bf16_.get(), dim, sized(kv_, T * hd), T);
  kernels::RmsNormParams kn;
  kn.x = kv_.get();
  kn.out = kv_.get();
  kn.weight = w.f32("attn.norm.weight", hd);
  kn.n_rows = T;
  kn.n_cols = hd;
  kn.eps = eps;
  kernels::launch_rms_norm(kn, stream_);
  kernels::RopeParams r;
  r.x = q_.get();
  r.n_rows = T;
  r.n_vecs = nh;
  r.dim = hd;
  r.inv_freq = rope.inv_freq.get();
  r.rope_dim = rope.rope_dim;
  r.attention_scaling = rope.attention_scaling;
  r.period = seq_len;
  r.position_step = 1;
  kernels::launch_rope(r, stream_);
  r.x = kv_.get();
  r.n_vecs = 1;
  kernels::launch_rope(r, stream_);

  int64_t n_entries = 0;
  timer_.mark("compressor + indexer");
  if (w.has("attn.compressor.wkv.weight")) compressed_entries(w, layer, n_seqs, seq_len, &n_entries);
  timer_.mark("attention core");

  kernels::SinkAttentionParams a;
  a.q = q_.get();
  a.kv = kv_.get();
  a.sinks = w.f32("attn.attn_sink", nh);
  a.compressed = n_entries > 0 ? entries_.get() : nullptr;
  a.visible = n_entries > 0 ? visible_.get() : nullptr;
  a.n_seqs = n_seqs;
  a.seq_len = seq_len;
  a.n_heads = nh;
  a.head_dim = hd;
  a.window = c_.sliding_window;
  a.n_entries = n_entries;
  a.scale = static_cast<float>(std::pow(static_cast<double>(hd), -0.5));
  a.out = sized(attn_, T * nh * hd);
  kernels::launch_sink_attention(a, stream_);
  // K = V carried RoPE into the output: rotate back at the query position.
  r.x = attn_.get();
  r.n_vecs = nh;
  r.inverse = true;
  kernels::launch_rope(r, stream_);

  timer_.mark("attn projections");
  // Grouped low-rank output projection, then wo_b.
  const int64_t groups = c_.o_groups, group_in = nh * hd / groups, rank = c_.o_lora_rank;
  const DeviceLinear& wo_a = w.linear("attn.wo_a.weight");
  QF_CHECK(wo_a.n_rows == groups * rank && wo_a.n_cols == group_in, "layer", layer,
           "wo_a shape does not match o_groups / o_lora_rank");
  observe_and_cast(attn_.get(), T, nh * hd, amax_bits, ObservationSlots::kAttnOut,
                   sized(attn_bf16_, T * nh * hd));
  const uint16_t* wo_a_bf16 =
      linear_as_bf16(wo_a, sized(weight_scratch_, wo_a.n_rows * wo_a.n_cols), stream_);
  gemm_bf16_grouped(cublas_, attn_bf16_.get(), wo_a_bf16, sized(low_, T * groups * rank), T, rank,
                    group_in, groups);
  observe_and_cast(low_.get(), T, groups * rank, amax_bits, ObservationSlots::kLowRank,
                   sized(low_bf16_, T * groups * rank));
  linear(w, "attn.wo_b.weight", low_bf16_.get(), groups * rank, block_out_.get(), T);
}

// model::compressor_forward: pooled entries and their visibility (HCA causal, CSA indexer).
void GpuDecoderLayer::compressed_entries(const DeviceLayerWeights& w, int layer, int n_seqs,
                                         int seq_len, int64_t* n_entries) {
  const int64_t T = int64_t{n_seqs} * seq_len, hd = c_.head_dim, rate = c_.compress_ratio(layer);
  const bool csa = c_.attention_kind(layer) == model::AttentionKind::kCompressedSparse;
  const int64_t width = csa ? 2 * hd : hd;
  const float eps = static_cast<float>(c_.rms_norm_eps);
  *n_entries = seq_len / rate;
  const DeviceLinear& cwkv = w.linear("attn.compressor.wkv.weight");
  QF_CHECK(cwkv.n_rows == width, "layer", layer, "compressor width", cwkv.n_rows, "expected",
           width);
  linear(w, "attn.compressor.wkv.weight", x_bf16_.get(), c_.hidden_size, sized(ckv_, T * width),
         T);
  linear(w, "attn.compressor.wgate.weight", x_bf16_.get(), c_.hidden_size,
         sized(cgate_, T * width), T);
  sized(visible_, T * *n_entries);
  if (*n_entries == 0) return;
  kernels::CompressPoolParams pool;
  pool.kv = ckv_.get();
  pool.gate = cgate_.get();
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
  pool.eps = eps;
  pool.out = sized(entries_, n_seqs * *n_entries * hd);
  kernels::launch_compress_pool(pool, stream_);
  if (!csa) {
    kernels::launch_causal_visibility({n_seqs, seq_len, *n_entries, rate, visible_.get()},
                                      stream_);
    return;
  }
  // Lightning Indexer: own overlapping compressor at index_head_dim; queries from q_residual.
  const int64_t ihd = c_.index_head_dim, inh = c_.index_n_heads;
  linear(w, "attn.indexer.compressor.wkv.weight", x_bf16_.get(), c_.hidden_size,
         sized(ikv_, T * 2 * ihd), T);
  linear(w, "attn.indexer.compressor.wgate.weight", x_bf16_.get(), c_.hidden_size,
         sized(igate_, T * 2 * ihd), T);
  linear(w, "attn.indexer.wq_b.weight", q_res_bf16_.get(), c_.q_lora_rank,
         sized(iq_, T * inh * ihd), T);
  linear(w, "attn.indexer.weights_proj.weight", x_bf16_.get(), c_.hidden_size,
         sized(iweights_, T * inh), T);
  scale_f32(cublas_, iweights_.get(), T * inh,
            static_cast<float>(std::pow(static_cast<double>(inh), -0.5)));
  QF_CHECK(rope_compress_.rope_dim <= ihd, "indexer head dim", ihd, "smaller than rope dim");
  kernels::RopeParams r;
  r.x = iq_.get();
  r.n_rows = T;
  r.n_vecs = inh;
  r.dim = ihd;
  r.inv_freq = rope_compress_.inv_freq.get();
  r.rope_dim = rope_compress_.rope_dim;
  r.attention_scaling = rope_compress_.attention_scaling;
  r.period = seq_len;
  r.position_step = 1;
  kernels::launch_rope(r, stream_);
  kernels::CompressPoolParams ipool = pool;
  ipool.kv = ikv_.get();
  ipool.gate = igate_.get();
  ipool.ape = w.f32("attn.indexer.compressor.ape", rate * 2 * ihd);
  ipool.norm = w.f32("attn.indexer.compressor.norm.weight", ihd);
  ipool.head_dim = ihd;
  ipool.overlapping = true;
  ipool.out = sized(keys_, n_seqs * *n_entries * ihd);
  kernels::launch_compress_pool(ipool, stream_);
  kernels::IndexerSelectParams sel;
  sel.q = iq_.get();
  sel.weights = iweights_.get();
  sel.keys = keys_.get();
  sel.n_seqs = n_seqs;
  sel.seq_len = seq_len;
  sel.n_entries = *n_entries;
  sel.n_heads = inh;
  sel.head_dim = ihd;
  sel.rate = rate;
  sel.top_k = c_.index_topk;
  sel.visible = visible_.get();
  sel.workspace =
      sized(indexer_workspace_, static_cast<int64_t>(kernels::indexer_select_workspace_bytes(sel)));
  kernels::launch_indexer_select(sel, stream_);
}

// model::moe_forward: router, dispatch, experts in ascending id, shared expert, combine.
void GpuDecoderLayer::moe(const DeviceLayerWeights& w, int layer, const int64_t* token_ids,
                          int64_t n_tokens, uint32_t* amax_bits,
                          std::vector<int64_t>* expert_tokens) {
  const int64_t dim = c_.hidden_size, n_exp = c_.n_routed_experts, k = c_.num_experts_per_tok,
                inter = c_.moe_intermediate_size, n_rows = n_tokens * k;
  const bool hash = c_.is_hash_layer(layer);
  const float limit = static_cast<float>(c_.swiglu_limit);

  timer_.mark("router + dispatch");
  observe_and_cast(x_.get(), n_tokens, dim, amax_bits, ObservationSlots::kFfnIn,
                   sized(x_bf16_, n_tokens * dim));
  // Router in true FP32 (top-k must pick what the reference picks).
  gemm_f32(cublas_, x_.get(), w.f32("ffn.gate.weight", n_exp * dim),
           sized(logits_, n_tokens * n_exp), n_tokens, n_exp, dim);
  QF_CUDA_CHECK(cudaMemsetAsync(sized(error_flag_, 1), 0, sizeof(int32_t), stream_),
                "clear routing error flag");
  kernels::RouteParams route;
  route.logits = logits_.get();
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
  route.experts = sized(experts_, n_rows);
  route.weights = sized(route_weights_, n_rows);
  route.error_flag = error_flag_.get();
  QF_CHECK(!hash || w.tid2eid.n_elems() >= static_cast<size_t>(c_.vocab_size * k), "layer", layer,
           "is hash-routed but has no tid2eid table on the GPU");
  kernels::launch_route(route, stream_);

  kernels::MoeDispatchParams d;
  d.experts = experts_.get();
  d.n_tokens = n_tokens;
  d.top_k = k;
  d.n_experts = n_exp;
  d.expert_offsets = sized(offsets_, n_exp + 1);
  d.row_token = sized(row_token_, n_rows);
  d.row_slot = sized(row_slot_, n_rows);
  d.token_row = sized(token_row_, n_rows);
  d.error_flag = error_flag_.get();
  d.workspace =
      sized(dispatch_workspace_, static_cast<int64_t>(kernels::moe_dispatch_workspace_bytes(d)));
  kernels::launch_moe_dispatch(d, stream_);
  host_offsets_.assign(static_cast<size_t>(n_exp + 2), 0);
  QF_CUDA_CHECK(cudaMemcpyAsync(host_offsets_.data(), offsets_.get(), (n_exp + 1) * 4,
                                cudaMemcpyDeviceToHost, stream_),
                "routing offsets download");
  QF_CUDA_CHECK(cudaMemcpyAsync(host_offsets_.data() + n_exp + 1, error_flag_.get(), 4,
                                cudaMemcpyDeviceToHost, stream_),
                "routing error flag download");
  QF_CUDA_CHECK(cudaStreamSynchronize(stream_), "layer", layer, "routing");
  QF_CHECK(host_offsets_[n_exp + 1] == 0, "layer", layer,
           "routing: a token id outside the vocabulary or an expert id outside [0,", n_exp,
           ") (tid2eid)");

  kernels::MoeGatherParams g;
  g.x = x_.get();
  g.row_token = row_token_.get();
  g.expert_offsets = offsets_.get();
  g.n_rows = n_rows;
  g.dim = dim;
  g.n_experts = n_exp;
  g.rows_bf16 = sized(rows_bf16_, n_rows * dim);
  g.amax_bits = amax_bits + ObservationSlots::expert_in(0);
  kernels::launch_moe_gather(g, stream_);
  if (hist_ != nullptr) {
    // The gathered rows are BF16: count their FP32 source rows, expert-sorted like the gather.
    kernels::ActHistParams h;
    h.x = x_.get();
    h.n_rows = n_rows;
    h.n_cols = dim;
    h.row_index = row_token_.get();
    h.segment_offsets = offsets_.get();
    h.n_segments = n_exp;
    h.hist = hist_ + int64_t{ObservationSlots::expert_in(0)} * numerics::kActHistBins;
    kernels::launch_act_hist(h, stream_);
  }

  // Expert weight cache: decided once per layer (a new arena), filled as experts get rows.
  if (cache_weights_ != w.id) {
    cache_weights_ = w.id;
    const uint64_t need = uint64_t(n_exp) * 3 * inter * dim * sizeof(uint16_t);
    const char* env = std::getenv("QF_EXPERT_CACHE");
    const bool allowed = env == nullptr || std::string(env) != "0";
    size_t free_bytes = 0, total_bytes = 0;
    QF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    const uint64_t have = expert_cache_.n_elems() * sizeof(uint16_t);
    // Keep a quarter of the GPU free for the activations of later, larger batches.
    cache_on_ = allowed && (have >= need || free_bytes + have > need + total_bytes / 4);
    if (cache_on_) expert_cache_.grow(need / sizeof(uint16_t));
    expert_cached_.assign(static_cast<size_t>(n_exp), 0);
  }
  int64_t max_rows = n_tokens;  // the shared expert runs on every token
  for (int64_t e = 0; e < n_exp; ++e) {
    max_rows = std::max<int64_t>(max_rows, host_offsets_[e + 1] - host_offsets_[e]);
  }
  float* y = sized(y_, n_rows * dim);
  // One expert MLP on rows x_rows [m, dim] on lane `lane`: y_out = w2(swiglu(w1 x, w3 x)).
  // cached: index of a routed expert in the cache, or -1 to dequantize into the lane's scratch.
  auto expert_mlp = [&](ExpertLane& lane, const std::string& prefix, const uint16_t* x_rows,
                        int64_t m, int hidden_slot, float* y_out, int64_t cached) {
    float* gate_up = sized(lane.gate_up, max_rows * 2 * inter);
    uint16_t* h = sized(lane.h_bf16, max_rows * inter);
    uint16_t* w13_e = nullptr;
    uint16_t* w2_e = nullptr;
    bool fill = true;
    if (cached >= 0) {
      w13_e = expert_cache_.get() + cached * 3 * inter * dim;
      w2_e = w13_e + 2 * inter * dim;
      fill = !expert_cached_[cached];
      expert_cached_[cached] = 1;
    } else {
      w13_e = sized(lane.w13, 2 * inter * dim);
      w2_e = sized(lane.w2, dim * inter);
    }
    if (fill) {
      weight_into(w, prefix + ".w1.weight", w13_e, lane.stream);
      weight_into(w, prefix + ".w3.weight", w13_e + inter * dim, lane.stream);
      weight_into(w, prefix + ".w2.weight", w2_e, lane.stream);
    }
    lane.planned->bf16(*lane.cublas, x_rows, dim, w13_e, gate_up, 2 * inter, m, 2 * inter, dim);
    kernels::SwigluParams s;
    s.gate_up = gate_up;
    s.n_rows = m;
    s.inter = inter;
    s.limit = limit;
    s.out_bf16 = h;
    s.amax_bits = amax_bits + hidden_slot;
    // Histograms count the FP32 SwiGLU output (what the amax sees), so keep it for them.
    if (hist_ != nullptr) s.out = sized(lane.h_f32, max_rows * inter);
    kernels::launch_swiglu(s, lane.stream);
    if (hist_ != nullptr) observe_hist(s.out, m, inter, hidden_slot, lane.stream);
    lane.planned->bf16(*lane.cublas, h, inter, w2_e, y_out, dim, m, dim, inter);
  };
  // Experts are small GEMMs (V4-Flash: ~400 rows each at 16k tokens) that fill a fraction of
  // the SMs: run them round-robin on side lanes, concurrently, while the shared expert runs on
  // the main stream. Each expert writes its own rows of y and its own amax slot.
  timer_.mark("experts (routed + shared)");
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
    expert_mlp(lane, "ffn.experts." + std::to_string(e), rows_bf16_.get() + begin * dim, m,
               ObservationSlots::expert_hidden(static_cast<int>(e), static_cast<int>(n_exp)),
               y + begin * dim, cache_on_ ? e : -1);
  }
  expert_mlp(main_lane_, "ffn.shared_experts", x_bf16_.get(), n_tokens,
             ObservationSlots::kSharedHidden, sized(shared_out_, n_tokens * dim), -1);
  for (auto& lane : lanes_) {
    QF_CUDA_CHECK(cudaEventRecord(lane.done.get(), lane.stream), "experts join");
    QF_CUDA_CHECK(cudaStreamWaitEvent(stream_, lane.done.get(), 0), "experts join");
  }
  timer_.mark("combine");

  kernels::MoeCombineParams comb;
  comb.y = y;
  comb.experts = experts_.get();
  comb.weights = route_weights_.get();
  comb.token_row = token_row_.get();
  comb.shared = shared_out_.get();
  comb.n_tokens = n_tokens;
  comb.top_k = k;
  comb.dim = dim;
  comb.out = block_out_.get();
  kernels::launch_moe_combine(comb, stream_);
}

}  // namespace qf::gpu
