// One DeepSeek V4 decoder layer on the GPU for calibration (CUDA backend): the same forward as
// model::decoder_layer_forward (transformers 5.17 DeepseekV4DecoderLayer), with activations in
// FP32, linear inputs cast to BF16 for cuBLAS GEMMs (FP32 accumulate), weights dequantized from
// source precision right before their GEMM, and the input amax of every linear recorded in
// device "amax slots" (kernels/forward/forward_ops.cuh) before the cast; on request also the
// |input| histogram of every slot (kernels/forward/act_histogram.cuh).
// Owns: the layer's op sequence, its activation workspace, the observation slots.
// Does not own: the weights (DeviceLayerWeights), the hidden states, or any reduction over ranks.
#pragma once
#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/cuda_raii.hpp"
#include "gpu/cublas_handle.hpp"
#include "gpu/device_layer.hpp"
#include "gpu/planned_gemm.hpp"
#include "gpu/section_timer.hpp"
#include "model/config.hpp"

namespace qf::gpu {

// Amax (and histogram) slots of one layer: one per distinct linear input. Linears that read the same tensor
// share a slot (wq_a, wkv and the compressor/indexer projections read x; w1 and w3 of an expert
// read its rows; ...).
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
  static int expert_hidden(int expert, int n_experts) {             // experts.E.w2
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
  GpuDecoderLayer(const model::ModelConfig& config, cudaStream_t stream);

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

  // Bytes of activation workspace the last forward() held.
  uint64_t workspace_bytes() const;
  // QF_PROFILE=1: logs GPU time per section since the last call (no-op otherwise).
  void report_profile(const std::string& title) { timer_.report(title); }

 private:
  struct DeviceRope {
    DeviceBuffer<float> inv_freq;
    int64_t rope_dim = 0;
    float attention_scaling = 1.0f;
  };
  void hc_pre(const DeviceLayerWeights& w, const std::string& site, const float* hidden,
              int64_t n_tokens);
  void hc_post(float* hidden, int64_t n_tokens);
  void attention(const DeviceLayerWeights& w, int layer, int n_seqs, int seq_len,
                 uint32_t* amax_bits);
  void compressed_entries(const DeviceLayerWeights& w, int layer, int n_seqs, int seq_len,
                          int64_t* n_entries);
  void moe(const DeviceLayerWeights& w, int layer, const int64_t* token_ids, int64_t n_tokens,
           uint32_t* amax_bits, std::vector<int64_t>* expert_tokens);
  // y[m, n] = x_bf16[m, k] * W^T with W the BF16 of linear `name`.
  void linear(const DeviceLayerWeights& w, const std::string& name, const uint16_t* x, int64_t ldx,
              float* y, int64_t m);
  // W (BF16 of linear `name`) written into `out` on `stream` (always a copy, also for BF16
  // storage).
  void weight_into(const DeviceLayerWeights& w, const std::string& name, uint16_t* out,
                   cudaStream_t stream);
  // amax (and, when hist_ is set, histogram) of x into `slot`, plus the BF16 copy.
  void observe_and_cast(const float* x, int64_t n_rows, int64_t n_cols, uint32_t* amax_bits,
                        int slot, uint16_t* out_bf16);
  // Histogram of x [n_rows, n_cols] into `slot` on `stream` (no-op when hist_ is null).
  void observe_hist(const float* x, int64_t n_rows, int64_t n_cols, int slot,
                    cudaStream_t stream);
  const DeviceRope& rope_of_layer(int layer) const;
  void upload_rope(const ops::RopeParams& params, DeviceRope* out);

  model::ModelConfig c_;
  cudaStream_t stream_;
  int64_t* hist_ = nullptr;  // the current forward's histogram slots, or null
  CublasHandle cublas_;
  SectionTimer timer_;
  DeviceRope rope_main_, rope_compress_;
  // Activations (grown to the largest batch seen).
  DeviceBuffer<float> flat_, mixes_, pre_, post_, comb_, x_, block_out_;
  DeviceBuffer<uint16_t> x_bf16_, q_res_bf16_, attn_bf16_, low_bf16_, weight_scratch_;
  DeviceBuffer<float> q_res_, q_, kv_, attn_, low_;
  DeviceBuffer<float> ckv_, cgate_, entries_, ikv_, igate_, iq_, iweights_, keys_;
  DeviceBuffer<uint8_t> visible_, indexer_workspace_, dispatch_workspace_;
  DeviceBuffer<float> logits_, route_weights_, y_, shared_out_;
  DeviceBuffer<int32_t> experts_, offsets_, row_token_, row_slot_, token_row_, error_flag_;
  DeviceBuffer<uint16_t> rows_bf16_;
  // Where an expert MLP runs: a stream with its cuBLAS handle and its own scratch. The main
  // lane is the layer's stream (shared expert); side lanes run routed experts concurrently.
  struct ExpertLane {
    cudaStream_t stream = nullptr;
    CublasHandle* cublas = nullptr;
    std::unique_ptr<CudaStream> own_stream;
    std::unique_ptr<CublasHandle> own_cublas;
    // Expert GEMMs: every expert has its own row count (planned_gemm.hpp says why).
    std::unique_ptr<PlannedGemm> planned;
    CudaEvent done;
    DeviceBuffer<float> gate_up;
    DeviceBuffer<uint16_t> h_bf16, w13, w2;
    DeviceBuffer<float> h_f32;  // SwiGLU output in FP32, only while histograms are recorded
  };
  static constexpr int kExpertLanes = 3;
  ExpertLane main_lane_;
  std::vector<ExpertLane> lanes_;
  CudaEvent rows_ready_;
  std::vector<int32_t> host_offsets_;
  // Routed experts dequantized to BF16 once per layer and kept for the layer's later batches
  // ([expert][w1 | w3 | w2]), when the GPU has room for them (QF_EXPERT_CACHE=0 disables).
  DeviceBuffer<uint16_t> expert_cache_;
  std::vector<uint8_t> expert_cached_;
  uint64_t cache_weights_ = 0;  // DeviceLayerWeights::id the cache belongs to
  bool cache_on_ = false;
};

}  // namespace qf::gpu
#endif  // QF_HAVE_CUDA
