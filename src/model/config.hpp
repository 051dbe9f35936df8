// ModelConfig: the DeepSeek V4 config.json, parsed once, typed and validated, for every user: the
// tensor table, plan, make-tiny, quantize, the CPU reference forward, the CUDA decoder layer,
// calibration and eval. Owns: parsing (both spellings), defaults, validation against
// config_limits.hpp, the per-layer derived facts. Does not own: tensor names (tensor_table.hpp).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ops/moe_math.hpp"
#include "ops/rope.hpp"

namespace qf::model {

// Attention block of a layer: transformers' layer_types, or the native compress_ratios (0 / 4 /
// 128). Sources: transformers configuration_deepseek_v4.py (_COMPRESS_RATIO_TO_LAYER_TYPE),
// DeepSeek inference/model.py (Attention, Compressor).
enum class AttentionKind {
  kSliding,            // ratio 0: window attention only, no compressor
  kCompressedSparse,   // CSA, ratio 4: compressor with overlap (2x width) + indexer
  kHeavilyCompressed,  // HCA, ratio 128: compressor without overlap, no indexer
};
// transformers' spelling: "sliding_attention" | "compressed_sparse_attention" |
// "heavily_compressed_attention".
const char* attention_kind_name(AttentionKind kind);

// MoE routing of a layer: hash (gate.tid2eid[token]) or learned top-k (gate.bias).
enum class MoeKind { kHash, kTopK };

// "sqrtsoftplus" | "sigmoid" | "softmax".
const char* scoring_func_name(ops::ScoringFunc func);

// Defaults: where a field is absent the member initializer below applies. They are
// transformers 5.17 DeepseekV4Config's (the V4-Flash architecture), including the fields the
// native checkpoint always spells out (before this config was unified, a missing vocab_size was
// an error here and 129280 in the forward's copy; it is 129280 now, as transformers reads it).
struct ModelConfig {
  // --- identity
  std::string model_type = "deepseek_v4";  // DeepseekV4Config.model_type; any other is refused
  std::string torch_dtype;
  // --- shapes (every field here changes some tensor shape)
  int64_t vocab_size = 129280;
  int64_t hidden_size = 4096;
  int num_hidden_layers = 43;
  int num_attention_heads = 64;
  int num_key_value_heads = 1;
  int64_t head_dim = 512;
  int64_t q_lora_rank = 1024;
  // The trailing roped dims of each head: int(head_dim * partial_rotary_factor).
  int64_t qk_rope_head_dim = 64;
  int o_groups = 8;
  int64_t o_lora_rank = 1024;
  int index_n_heads = 64;
  int64_t index_head_dim = 128;
  int n_routed_experts = 256;
  int n_shared_experts = 1;
  int num_experts_per_tok = 6;
  int64_t moe_intermediate_size = 2048;
  // Hash-routed MoE for layers [0, num_hash_layers) (DeepSeek model.py; transformers'
  // mlp_layer_types must be such a prefix).
  int num_hash_layers = 3;
  int hc_mult = 4;
  int num_nextn_predict_layers = 1;
  bool tie_word_embeddings = false;
  // Per layer, main layers then MTP layers (at least n_layers_total() entries; a longer file
  // list is kept for the round trip). MTP entries the file does not list are sliding, as
  // DeepSeek's model.py reads compress_ratios[n_layers + m] for MTP layer m.
  std::vector<AttentionKind> attention_kinds;
  // Compression rate of each compressed kind (transformers' compress_rates; the native
  // compress_ratios spelling implies 4 and 128).
  int compress_rate_csa = 4;
  int compress_rate_hca = 128;
  // --- numerics that do not change shapes
  int64_t sliding_window = 128;
  int index_topk = 512;
  int64_t max_position_embeddings = 1048576;
  // RoPE of sliding layers ("main": rope_theta) and of compressed layers and compressors
  // ("compress": compress_rope_theta, plus YaRN from rope_scaling / rope_parameters).
  ops::RopeParams rope_main, rope_compress;
  // softmax is a valid V4 router (model.py Gate) but the reference forward and the kernels do
  // not implement it: require_reference_forward() refuses it where a forward is built.
  ops::ScoringFunc scoring_func = ops::ScoringFunc::kSqrtSoftplus;
  std::string topk_method;
  double routed_scaling_factor = 1.5;
  bool norm_topk_prob = true;  // parsed but, as in transformers, not consulted (always normalised)
  double swiglu_limit = 10.0;  // always applied, as in transformers (gate <= limit, |up| <= limit)
  int hc_sinkhorn_iters = 20;
  double hc_eps = 1e-6;
  double rms_norm_eps = 1e-6;
  std::string hidden_act = "silu";
  // --- storage
  std::string expert_dtype = "fp4";    // "fp4" | "fp8" (vLLM default "fp4" when absent)
  nlohmann::json quantization_config;  // null when absent (a BF16 checkpoint)
  // The file as read: unknown fields round-trip through to_json().
  nlohmann::json raw = nlohmann::json::object();
  // Where it was read from, for errors raised after parsing ("config" when built in code).
  std::string source = "config";

  // Parses and validates (config_validate.cpp: every field's range, then the consistency of the
  // shapes and the products that size allocations) before returning: nothing is sized from an
  // unchecked value. Every error names `source_for_errors` (a file name), the field, the value
  // and the reason. Accepts transformers' spelling and the native one (compress_ratios,
  // num_hash_layers, qk_rope_head_dim, rope_scaling).
  static ModelConfig from_json(const nlohmann::json& json, const std::string& source_for_errors);
  static ModelConfig load(const std::string& path);  // from_json(read_json_file(path), path)
  // `raw` with every known field replaced by the current value; keeps the raw file's spelling
  // (compress_ratios vs layer_types, num_hash_layers vs mlp_layer_types, ...).
  nlohmann::json to_json() const;
  // Re-runs the range and consistency checks (for configs built or edited in code).
  void validate(const std::string& source_for_errors) const;
  // Refuses (naming `source`) what config.json may say but the reference forward and the CUDA
  // decoder layer do not implement (scoring_func softmax). Called where a forward is built.
  void require_reference_forward() const;

  // --- derived, per layer: 0..num_hidden_layers-1 main, then MTP layers
  int n_layers_total() const { return num_hidden_layers + num_nextn_predict_layers; }
  bool is_mtp_layer(int layer) const { return layer >= num_hidden_layers; }
  AttentionKind attention_kind(int layer) const;
  // 0 for sliding layers, else compress_rate_csa / compress_rate_hca.
  int compress_ratio(int layer) const;
  bool has_compressor(int layer) const { return attention_kind(layer) != AttentionKind::kSliding; }
  bool has_indexer(int layer) const {
    return attention_kind(layer) == AttentionKind::kCompressedSparse;
  }
  // Hash-routed MoE (gate.tid2eid, no gate.bias): layer < num_hash_layers, never MTP.
  bool is_hash_layer(int layer) const;
  MoeKind moe_kind(int layer) const {
    return is_hash_layer(layer) ? MoeKind::kHash : MoeKind::kTopK;
  }
  // Sliding layers rotate with "main", compressed layers with "compress".
  const ops::RopeParams& rope_for_layer(int layer) const;
  // "layers.7" or "mtp.0": the native name prefix of a layer.
  std::string layer_prefix(int layer) const;
  bool experts_fp4() const { return expert_dtype == "fp4"; }
  bool has_quantization_config() const { return quantization_config.is_object(); }
  // quantization_config.quant_method, or "none".
  std::string quant_method() const;
  // One line per fact, for `inspect` and logs.
  std::string summary() const;
};

}  // namespace qf::model
