// ModelConfig: the DeepSeek V4 config.json (the fields transformers' DeepseekV4Config reads, in
// the native checkpoint's spelling, plus `expert_dtype` and `quantization_config`), validated.
// Owns: parsing, validation, defaults, per-layer derived facts. Does not own: tensor names.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qf::model {

// Attention block type per layer, from compress_ratios (0 / 4 / 128) or transformers'
// layer_types ("sliding_attention" / "compressed_sparse_attention" /
// "heavily_compressed_attention"). Source: transformers configuration_deepseek_v4.py
// (_COMPRESS_RATIO_TO_LAYER_TYPE); DeepSeek inference/model.py (Attention, Compressor).
enum class AttnType {
  kSliding,  // ratio 0: window attention only, no compressor
  kCsa,      // ratio 4: compressor with overlap (2x width) + indexer
  kHca,      // ratio 128: compressor without overlap, no indexer
};

const char* attn_type_name(AttnType type);  // "sliding" | "csa" | "hca"

// YaRN parameters of the compressed branches (config.json `rope_scaling`).
struct RopeScaling {
  std::string type;  // "yarn"; empty when the config has no rope_scaling
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
};

struct ModelConfig {
  // --- identity
  std::string model_type;  // must be "deepseek_v4"
  std::string torch_dtype;
  // --- shapes (every field here changes some tensor shape)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 1;
  int64_t head_dim = 0;
  int64_t q_lora_rank = 0;
  int64_t qk_rope_head_dim = 0;
  int o_groups = 0;
  int64_t o_lora_rank = 0;
  int index_n_heads = 0;
  int64_t index_head_dim = 0;
  int n_routed_experts = 0;
  int n_shared_experts = 1;
  int num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  int num_hash_layers = 0;
  int hc_mult = 0;
  int num_nextn_predict_layers = 0;
  bool tie_word_embeddings = false;
  // Per layer, main layers then MTP layers; entries beyond the file's list are 0 (sliding),
  // as DeepSeek's model.py reads compress_ratios[n_layers + m] for MTP layer m.
  std::vector<int> compress_ratios;
  // --- numerics that do not change shapes
  int64_t sliding_window = 128;
  int index_topk = 512;
  int64_t max_position_embeddings = 1048576;
  double rope_theta = 10000.0;
  double compress_rope_theta = 160000.0;
  RopeScaling rope_scaling;
  std::string scoring_func = "sqrtsoftplus";
  std::string topk_method;
  double routed_scaling_factor = 1.5;
  bool norm_topk_prob = true;
  double swiglu_limit = 10.0;
  int hc_sinkhorn_iters = 20;
  double hc_eps = 1e-6;
  double rms_norm_eps = 1e-6;
  std::string hidden_act = "silu";
  // --- storage
  std::string expert_dtype = "fp4";    // "fp4" | "fp8" (vLLM default "fp4" when absent)
  nlohmann::json quantization_config;  // null when absent (a BF16 checkpoint)
  // The file as read: unknown fields round-trip through to_json().
  nlohmann::json raw = nlohmann::json::object();

  // Parses and validates. Every error names `source_for_errors` (a file name) and the field.
  static ModelConfig from_json(const nlohmann::json& json, const std::string& source_for_errors);
  static ModelConfig load(const std::string& path);  // from_json(read_json_file(path), path)
  // `raw` with every known field replaced by the current value; keeps the raw file's spelling
  // (compress_ratios vs layer_types, num_hash_layers vs mlp_layer_types, ...).
  nlohmann::json to_json() const;
  // Re-runs the consistency checks (for configs built or edited in code).
  void validate(const std::string& source_for_errors) const;

  // --- derived, per layer: 0..num_hidden_layers-1 main, then MTP layers
  int n_layers_total() const { return num_hidden_layers + num_nextn_predict_layers; }
  bool is_mtp_layer(int layer) const { return layer >= num_hidden_layers; }
  int compress_ratio(int layer) const;
  AttnType attn_type(int layer) const;
  bool has_compressor(int layer) const { return compress_ratio(layer) != 0; }
  bool has_indexer(int layer) const { return attn_type(layer) == AttnType::kCsa; }
  // Hash-routed MoE (gate.tid2eid, no gate.bias): layer < num_hash_layers, never MTP.
  bool is_hash_layer(int layer) const;
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
