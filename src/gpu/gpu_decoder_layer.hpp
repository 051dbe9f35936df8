// One DeepSeek V4 decoder layer on the GPU for calibration (CUDA backend): the same forward as
// model::decoder_layer_forward (transformers 5.17 DeepseekV4DecoderLayer), with activations in
// FP32, linear inputs cast to BF16 for cuBLAS GEMMs (FP32 accumulate; or split into three BF16
// planes for FP32-accurate products, DecoderLayerPolicy::fp32_linear_inputs), weights dequantized
// from source precision right before their GEMM, and the input amax of every linear recorded in
// device "amax slots" (kernels/forward/forward_ops.cuh) before the cast; on request also the
// |input| histogram of every slot (kernels/forward/act_histogram.cuh).
// Owns: the layer's op sequence, its activation workspace (one buffer table), the observation
// slots. Does not own: the weights (DeviceLayerWeights), the hidden states, any reduction over
// ranks, or its memory/profiling policy (DecoderLayerPolicy, decided by the caller).
// Defined in gpu_decoder_layer.cu (set-up, workspace, mHC, the layer), _attention.cu, _moe.cu.
#pragma once
#include <cstdint>

namespace qf::gpu {

// What the caller decides for a GpuDecoderLayer (plain data, in CPU-only builds too: the
// calibration options carry it). The quantize job fills it from its options; QF_EXPERT_CACHE
// and QF_PROFILE are read there (docs/CUDA_BACKEND.md), never by the layer.
struct DecoderLayerPolicy {
  // Keep a layer's routed experts dequantized to BF16 for the layer's later batches when the
  // GPU has room (a quarter of it stays free); off: dequantize every expert into lane scratch
  // for every batch (less memory, more time). Results are identical either way.
  bool expert_cache = true;
  // Time each section of each layer with CUDA events and log it per layer (SectionTimer).
  bool profile_sections = false;
  // Every linear input reaches its GEMMs as three BF16 planes (hi + mid + lo of the FP32
  // activation, numerics::float_to_bf16_planes), accumulated in FP32: the products are those
  // of FP32 inputs to ~1e-7 relative, so the hidden states, and with them the routing, follow
  // the FP32 reference (issue 24). Off: one BF16 plane (inputs rounded to BF16), 3x less GEMM
  // work. The observed amax are of the FP32 inputs either way.
  bool fp32_linear_inputs = false;
};

}  // namespace qf::gpu

#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "core/cuda_raii.hpp"
#include "gpu/cublas_handle.hpp"
#include "gpu/device_layer.hpp"
#include "gpu/device_workspace.hpp"
#include "gpu/planned_gemm.hpp"
#include "gpu/section_timer.hpp"
#include "kernels/forward/attention.cuh"
#include "model/config.hpp"

namespace qf::gpu {

// Amax (and histogram) slots of one layer: one per distinct linear input. Linears that read the
// same tensor share a slot (wq_a, wkv and the compressor/indexer projections read x; w1 and w3 of
// an expert read its rows; ...).
struct ObservationSlots {
  enum Fixed : int {
    kAttnIn = 0,    // attn_norm output: wq_a, wkv, compressor.*, indexer.compressor.*, weights_proj
    kQResidual,     // q_norm output: wq_b, indexer.wq_b
    kAttnOut,       // de-roped attention output: wo_a
    kLowRank,       // wo_a output: wo_b
    kFfnIn,         // ffn_norm output: gate, shared_experts.w1/w3
    kSharedHidden,  // shared expert SwiGLU output: shared_experts.w2
    kNumFixed
  };
  static int expert_in(int expert) { return kNumFixed + expert; }  // experts.E.w1/w3
  static int expert_hidden(int expert, int n_experts) {            // experts.E.w2
    return kNumFixed + n_experts + expert;
  }
  static int count(int n_experts) { return kNumFixed + 2 * n_experts; }
  // The slot of a native linear name of `layer` ("layers.L.attn.wq_a", ...); throws for a
  // name the forward does not run.
  static int of(const std::string& linear_name, int layer, int n_experts);
};

class GpuDecoderLayer {
 public:
  // Keeps a copy of `config`; refuses what the kernels do not implement (scoring softmax).
  GpuDecoderLayer(const model::ModelConfig& config, cudaStream_t stream,
                  DecoderLayerPolicy policy = {});

  // Runs layer `layer` in place on hidden [n_seqs * seq_len, hc_mult, hidden_size] (device
  // FP32), positions 0..seq_len-1 in each sequence; token_ids [n_seqs * seq_len] (device) feed
  // hash routing. amax_bits [ObservationSlots::count] (device) is max-accumulated;
  // expert_tokens [n_routed_experts] (host) is incremented by the rows routed to each expert.
  // hist_slots [ObservationSlots::count, kActHistBins] (device) or null: the counts of |x| of
  // every slot's FP32 input (before the BF16 cast) are added to it; null costs nothing.
  // Enqueued on the stream; returns after the routing counts are known (one host sync per MoE).
  void forward(const DeviceLayerWeights& w, int layer, float* hidden, const int64_t* token_ids,
               int n_seqs, int seq_len, uint32_t* amax_bits, std::vector<int64_t>* expert_tokens,
               int64_t* hist_slots = nullptr);

  // The activation workspace: every buffer by name with the bytes it holds (grown to the
  // largest batch seen), and their sum. The same table the forward allocates from.
  std::vector<DeviceWorkspace::Entry> workspace() const { return ws_.entries(); }
  uint64_t workspace_bytes() const { return ws_.n_bytes(); }
  // policy.profile_sections: logs GPU time per section since the last call (no-op otherwise).
  void report_profile(const std::string& title) { timer_.report(title); }

 private:
  // The workspace table (gpu_decoder_layer.cu, kBufferTable): one entry per buffer.
  // clang-format off
  enum Buf : int {
    kFlat, kMixes, kPre, kPost, kComb, kX, kBlockOut,                         // mHC, norms
    kXBf16, kQResBf16, kAttnBf16, kLowBf16, kWeightScratch,                   // GEMM inputs
    kQRes, kQ, kKv, kAttn, kLow,                                              // attention
    kCkv, kCgate, kEntries, kIkv, kIgate, kIq, kIweights, kKeys, kVisible,    // compressor
    kIndexerWorkspace,                                                        // indexer
    kLogits, kRouteWeights, kExperts, kOffsets, kRowToken, kRowSlot, kTokenRow,
    kErrorFlag, kDispatchWorkspace, kRowsBf16, kY, kSharedOut, kExpertCache,  // MoE
    kNumBufs
  };
  // clang-format on
  // Per expert lane, at lane.buf_base + LaneBuf.
  enum LaneBuf : int { kGateUp, kHBf16, kW13, kW2, kHF32, kNumLaneBufs };

  struct DeviceRope {
    DeviceBuffer<float> inv_freq;
    int64_t rope_dim = 0;
    float attention_scaling = 1.0f;
  };
  // Where an expert MLP runs: a stream with its cuBLAS handle and its own scratch buffers
  // (workspace entries buf_base + LaneBuf). The main lane is the layer's stream (shared
  // expert); side lanes run routed experts concurrently.
  struct ExpertLane {
    cudaStream_t stream = nullptr;
    CublasHandle* cublas = nullptr;
    std::unique_ptr<CudaStream> own_stream;
    std::unique_ptr<CublasHandle> own_cublas;
    // Expert GEMMs: every expert has its own row count (planned_gemm.hpp says why).
    std::unique_ptr<PlannedGemm> planned;
    CudaEvent done;
    int buf_base = 0;
  };
  // One expert MLP's operands: y = w2(swiglu(w1 x, w3 x)) on `m` rows.
  struct ExpertCall {
    std::string prefix;      // "ffn.experts.E" or "ffn.shared_experts"
    const uint16_t* x_rows;  // [m, dim] BF16, planes (n_planes()) plane_stride elements apart
    int64_t plane_stride;
    int64_t m;
    int hidden_slot;  // observation slot of the SwiGLU output (w2's input)
    float* y;         // [m, dim]
    int64_t cached;   // index in the expert cache, or -1: dequantize into lane scratch
  };

  // ---- workspace and small helpers (gpu_decoder_layer.cu) ----
  void declare_workspace();
  template <typename T>
  T* buf(Buf id) const {
    return ws_.get<T>(id);
  }
  template <typename T>
  T* buf(Buf id, int64_t n_elems) {
    return ws_.sized<T>(id, n_elems);
  }
  template <typename T>
  T* lane_buf(const ExpertLane& lane, LaneBuf id, int64_t n_elems) {
    return ws_.sized<T>(lane.buf_base + id, n_elems);
  }
  void upload_rope(const ops::RopeParams& params, DeviceRope* out);
  const DeviceRope& rope_of_layer(int layer) const;
  // kernels::launch_rms_norm of x [n_rows, n_cols] into out (== x: in place), weight or null,
  // with the config's eps.
  void rms_norm(const float* x, float* out, const float* weight, int64_t n_rows, int64_t n_cols);
  // kernels::launch_rope of `rope` on x [n_rows, n_vecs, dim], token rows of sequences of
  // seq_len (position = row % seq_len).
  void apply_rope(const DeviceRope& rope, float* x, int64_t n_rows, int64_t n_vecs, int64_t dim,
                  int64_t seq_len, bool inverse = false);
  // BF16 planes per linear input: 1, or 3 with policy_.fp32_linear_inputs.
  int n_planes() const { return policy_.fp32_linear_inputs ? 3 : 1; }
  // y[m, n] = x[m, k] * W^T with W the BF16 of linear `name` and x the sum of its n_planes()
  // BF16 planes, each [m, ldx], contiguous (as observe_and_cast writes them).
  void linear(const DeviceLayerWeights& w, const std::string& name, const uint16_t* x, int64_t ldx,
              float* y, int64_t m);
  // The mid and lo planes (numerics::float_to_bf16_planes) of FP32 rows x[row_index[r]] (or
  // x[r] without an index), r < n_rows (and < *row_count, a device count, when given), at
  // out + plane_stride and out + 2 * plane_stride; the
  // hi plane at `out` is the caller's (the cast, gather or SwiGLU kernel writes it). No-op with
  // one plane.
  void write_lower_planes(const float* x, const int32_t* row_index, const int32_t* row_count,
                          int64_t n_rows, int64_t n_cols, uint16_t* out, int64_t plane_stride,
                          cudaStream_t stream);
  // W (BF16 of linear `name`) written into `out` on `stream` (always a copy, also for BF16
  // storage).
  void weight_into(const DeviceLayerWeights& w, const std::string& name, uint16_t* out,
                   cudaStream_t stream);
  // amax (and, when hist_ is set, histogram) of x into `slot`, plus the BF16 planes of x
  // (out_bf16 holds n_planes() * n_rows * n_cols).
  void observe_and_cast(const float* x, int64_t n_rows, int64_t n_cols, uint32_t* amax_bits,
                        int slot, uint16_t* out_bf16);
  // Histogram of x [n_rows, n_cols] into `slot` on `stream` (no-op when hist_ is null).
  void observe_hist(const float* x, int64_t n_rows, int64_t n_cols, int slot, cudaStream_t stream);

  // ---- mHC (gpu_decoder_layer.cu) ----
  void hc_pre(const DeviceLayerWeights& w, const std::string& site, const float* hidden,
              int64_t n_tokens);
  void hc_post(float* hidden, int64_t n_tokens);

  // ---- attention (gpu_decoder_layer_attention.cu) ----
  void attention(const DeviceLayerWeights& w, int layer, int n_seqs, int seq_len,
                 uint32_t* amax_bits);
  void attention_qkv(const DeviceLayerWeights& w, const DeviceRope& rope, int64_t n_tokens,
                     int seq_len, uint32_t* amax_bits);
  void attention_core(const DeviceLayerWeights& w, const DeviceRope& rope, int n_seqs, int seq_len,
                      int64_t n_entries);
  void attention_output(const DeviceLayerWeights& w, int layer, int64_t n_tokens,
                        uint32_t* amax_bits);
  void compressed_entries(const DeviceLayerWeights& w, int layer, int n_seqs, int seq_len,
                          int64_t* n_entries);
  void indexer_select(const DeviceLayerWeights& w, const kernels::CompressPoolParams& pool,
                      int n_seqs, int seq_len, int64_t n_entries);

  // ---- MoE (gpu_decoder_layer_moe.cu) ----
  void moe(const DeviceLayerWeights& w, int layer, const int64_t* token_ids, int64_t n_tokens,
           uint32_t* amax_bits, std::vector<int64_t>* expert_tokens);
  void route(const DeviceLayerWeights& w, int layer, const int64_t* token_ids, int64_t n_tokens);
  void dispatch(int layer, int64_t n_tokens);
  void gather(int64_t n_tokens, uint32_t* amax_bits);
  void prepare_expert_cache(const DeviceLayerWeights& w);
  void run_experts(const DeviceLayerWeights& w, int64_t n_tokens, uint32_t* amax_bits,
                   std::vector<int64_t>* expert_tokens);
  void expert_mlp(const DeviceLayerWeights& w, ExpertLane& lane, const ExpertCall& call,
                  int64_t max_rows, uint32_t* amax_bits);
  void combine(int64_t n_tokens);

  model::ModelConfig c_;
  cudaStream_t stream_;
  DecoderLayerPolicy policy_;
  int64_t* hist_ = nullptr;  // the current forward's histogram slots, or null
  CublasHandle cublas_;
  SectionTimer timer_;
  DeviceRope rope_main_, rope_compress_;
  DeviceWorkspace ws_;  // every activation buffer (kBufferTable, then each lane's)
  static constexpr int kExpertLanes = 3;
  ExpertLane main_lane_;
  std::vector<ExpertLane> lanes_;
  CudaEvent rows_ready_;
  std::vector<int32_t> host_offsets_;  // [n_experts + 1] routing offsets, then the error flag
  // Routed experts dequantized to BF16 once per layer and kept for the layer's later batches
  // (workspace kExpertCache, [expert][w1 | w3 | w2]) when policy_.expert_cache and the GPU has
  // room for them.
  std::vector<uint8_t> expert_cached_;
  uint64_t cache_weights_ = 0;  // DeviceLayerWeights::id the cache belongs to
  bool cache_on_ = false;
};

}  // namespace qf::gpu
#endif  // QF_HAVE_CUDA
