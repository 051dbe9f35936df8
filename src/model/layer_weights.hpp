// FP32 weights of one decoder layer and of the model ends (embedding, final norm, hyper-head,
// head), filled through a caller-provided WeightLoader. Owns: which tensors exist and their
// shapes. Does not own: reading or dequantizing checkpoint files (the loader does that).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/forward_linear.hpp"

namespace qf::model {

// Returns the FP32 values of one tensor, row-major, checked by the caller against
// expected_shape. Names are the tensor names of a transformers save_pretrained() checkpoint
// with a leading `model.` removed (see the table in layer_weights.cpp; the native DeepSeek
// checkpoint differs only in the model ends: embed.weight, hc_head_fn/_base/_scale).
// Integer tensors (gate.tid2eid) come back as exact float values.
using WeightLoader =
    std::function<std::vector<float>(const std::string& name, std::vector<int64_t> expected_shape)>;

// Mixed-pool compressor of CSA (width = 2*head_dim: Ca | Cb series) or HCA (width = head_dim).
struct CompressorWeights {
  Tensor2D wkv, wgate;      // [width, hidden]
  Tensor2D ape;             // [compress_rate, width]: position bias added to the gate logits
  std::vector<float> norm;  // [head_dim]: RMSNorm of the pooled entry
};

// Lightning indexer of a CSA layer (its compressor has width 2*index_head_dim).
struct IndexerWeights {
  CompressorWeights compressor;
  Tensor2D wq_b;          // [index_n_heads*index_head_dim, q_lora_rank]
  Tensor2D weights_proj;  // [index_n_heads, hidden]
};

struct AttentionWeights {
  Tensor2D wq_a;               // [q_lora_rank, hidden]
  std::vector<float> q_norm;   // [q_lora_rank]
  Tensor2D wq_b;               // [heads*head_dim, q_lora_rank]
  Tensor2D wkv;                // [head_dim, hidden]: the single shared K=V head
  std::vector<float> kv_norm;  // [head_dim]  (native name attn.norm)
  Tensor2D wo_a;  // [o_groups*o_lora_rank, heads*head_dim/o_groups]: block-diagonal per group
  Tensor2D wo_b;  // [hidden, o_groups*o_lora_rank]
  std::vector<float> sinks;  // [heads]   (native name attn.attn_sink)
  bool has_compressor = false, has_indexer = false;
  CompressorWeights compressor;
  IndexerWeights indexer;
};

// One mHC site: mixes = RMS-normalised streams (hc_mult*hidden) * fn^T -> pre | post | comb.
struct HyperConnectionWeights {
  Tensor2D fn;               // [(2+hc)*hc, hc*hidden]
  std::vector<float> base;   // [(2+hc)*hc]
  std::vector<float> scale;  // [3]
};

struct ExpertWeights {
  Tensor2D w1, w3;  // [moe_intermediate, hidden]: gate, up
  Tensor2D w2;      // [hidden, moe_intermediate]: down
};

// Routed experts decoded on demand, one at a time: get(e) returns expert e, loading it through
// the loader unless it is the expert already held (which it then replaces). A returned
// reference stays valid until get() is called for another expert. Not thread-safe: the forward
// asks for experts from its calling thread only. What eval uses to hold one expert of a layer
// instead of all of them (256 experts of V4-Flash are 26 GB in FP32).
class LazyExperts {
 public:
  LazyExperts(WeightLoader loader, std::string prefix, int64_t n_experts, int64_t hidden,
              int64_t intermediate);
  const ExpertWeights& get(int64_t e);
  int64_t n_experts() const { return n_experts_; }
  int64_t n_loads() const { return n_loads_; }  // experts decoded so far (loader calls / 3)

 private:
  WeightLoader loader_;
  std::string prefix_;  // layers.L.ffn.experts.
  int64_t n_experts_, hidden_, intermediate_;
  int64_t held_ = -1, n_loads_ = 0;
  ExpertWeights weights_;
};

struct MoeWeights {
  Tensor2D gate;                       // [n_routed_experts, hidden]: router weight
  std::vector<float> gate_bias;        // [n_routed_experts] (top-k layers: selection-only bias)
  std::vector<int32_t> tid2eid;        // [vocab, top_k] (hash layers)
  std::vector<ExpertWeights> experts;  // every routed expert; empty when `lazy` holds them
  std::shared_ptr<LazyExperts> lazy;   // set by load_layer_weights(..., lazy_experts = true)
  ExpertWeights shared;

  int64_t n_experts() const {
    return lazy ? lazy->n_experts() : static_cast<int64_t>(experts.size());
  }
  // Routed expert e (0 <= e < n_experts()): experts[e], or decoded now through `lazy` (see
  // LazyExperts for how long the reference lives).
  const ExpertWeights& expert(int64_t e) const;
};

struct LayerWeights {
  int layer = -1;
  std::vector<float> attn_norm, ffn_norm;  // [hidden]
  HyperConnectionWeights hc_attn, hc_ffn;
  AttentionWeights attn;
  MoeWeights ffn;
};

struct GlobalWeights {
  Tensor2D embed;                                  // [vocab, hidden]
  std::vector<float> norm;                         // [hidden]
  Tensor2D hc_head_fn;                             // [hc, hc*hidden]
  std::vector<float> hc_head_base, hc_head_scale;  // [hc], [1]
  Tensor2D head;                                   // [vocab, hidden]
};

// lazy_experts: the routed experts are not loaded now but on first use, one at a time
// (MoeWeights::lazy keeps a copy of the loader, so what it refers to must outlive the weights).
// The values are the same either way.
LayerWeights load_layer_weights(const ModelConfig& config, int layer, const WeightLoader& loader,
                                bool lazy_experts = false);
GlobalWeights load_global_weights(const ModelConfig& config, const WeightLoader& loader);

// Every tensor name load_layer_weights / load_global_weights asks for, in call order.
std::vector<std::string> layer_weight_names(const ModelConfig& config, int layer);
std::vector<std::string> global_weight_names();

}  // namespace qf::model
