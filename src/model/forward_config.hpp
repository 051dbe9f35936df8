// ForwardConfig: the architecture numbers the CPU reference forward reads, parsed from an HF-style
// DeepSeek V4 config.json exactly as transformers 5.17's DeepseekV4Config.__post_init__ fills its
// defaults. Owns: that parse and the derived RoPE tables. Does not own: the project-wide
// ModelConfig (model/config.hpp) or anything about checkpoint files.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ops/moe_math.hpp"
#include "ops/rope.hpp"

namespace qf::model {

enum class AttentionKind { kSliding, kCompressedSparse, kHeavilyCompressed };
enum class MoeKind { kHash, kTopK };

struct ForwardConfig {
  int64_t vocab_size = 0, hidden_size = 0, num_hidden_layers = 0;
  int64_t num_attention_heads = 0, head_dim = 0, q_lora_rank = 0;
  int64_t o_groups = 0, o_lora_rank = 0;
  int64_t rope_head_dim = 0;  // int(head_dim * partial_rotary_factor): the trailing roped dims
  int64_t max_position_embeddings = 0;
  ops::RopeParams rope_main, rope_compress;
  std::vector<AttentionKind> layer_types;
  int64_t compress_rate_csa = 4, compress_rate_hca = 128;
  int64_t sliding_window = 128;
  int64_t index_n_heads = 0, index_head_dim = 0, index_topk = 0;
  int64_t n_routed_experts = 0, n_shared_experts = 1, num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  std::vector<MoeKind> mlp_layer_types;
  ops::ScoringFunc scoring_func = ops::ScoringFunc::kSqrtSoftplus;
  double routed_scaling_factor = 1.0;
  bool norm_topk_prob = true;  // parsed but, as in transformers, not consulted (always normalised)
  double swiglu_limit = 10.0;  // always applied, as in transformers (gate <= limit, |up| <= limit)
  int64_t hc_mult = 1, hc_sinkhorn_iters = 1;
  double hc_eps = 1e-6, rms_norm_eps = 1e-6;
  // Not from config.json: round every linear's input to BF16 before its product (the router's
  // and the mHC mixes' excepted), as the CUDA backend does; the reference for its comparison.
  bool bf16_linear_inputs = false;

  // Parses an HF config.json (also accepts the legacy native keys compress_ratios,
  // num_hash_layers, qk_rope_head_dim, rope_scaling). Throws qf::Error naming `what`.
  static ForwardConfig from_json(const nlohmann::json& config, const std::string& what);

  int64_t compress_rate(int layer) const;             // 0 for sliding layers
  const ops::RopeParams& rope_for_layer(int layer) const;  // sliding: main, CSA/HCA: compress
};

const char* attention_kind_name(AttentionKind kind);

}  // namespace qf::model
