// ForwardConfig parsing: transformers 5.17 DeepseekV4Config defaults and legacy-key folding
// (configuration_deepseek_v4.py __post_init__), re-done in C++ so the reference forward and
// the parity program read a config.json the way transformers does.
#include "model/forward_config.hpp"

#include <cmath>

#include "core/check.hpp"

namespace qf::model {
namespace {

using nlohmann::json;

bool has(const json& j, const char* key) { return j.contains(key) && !j.at(key).is_null(); }

int64_t get_int(const json& j, const char* key, int64_t fallback) {
  return has(j, key) ? j.at(key).get<int64_t>() : fallback;
}

double get_num(const json& j, const char* key, double fallback) {
  return has(j, key) ? j.at(key).get<double>() : fallback;
}

AttentionKind parse_attention_kind(const std::string& name, const std::string& what) {
  if (name == "sliding_attention") return AttentionKind::kSliding;
  if (name == "compressed_sparse_attention") return AttentionKind::kCompressedSparse;
  if (name == "heavily_compressed_attention") return AttentionKind::kHeavilyCompressed;
  QF_FAIL(what, ": unknown layer type", name);
}

// One rope_parameters entry; `type` is accepted as an alias of `rope_type` (HF BC).
ops::RopeParams parse_rope(const json& j, double prf_default, const std::string& what) {
  ops::RopeParams p;
  p.rope_type = j.value("rope_type", j.value("type", std::string("default")));
  QF_CHECK(p.rope_type == "default" || p.rope_type == "yarn", what,
           ": rope_type not supported by the reference forward:", p.rope_type);
  p.rope_theta = get_num(j, "rope_theta", 10000.0);
  p.partial_rotary_factor = get_num(j, "partial_rotary_factor", prf_default);
  p.factor = get_num(j, "factor", 1.0);
  p.has_attention_factor = has(j, "attention_factor");
  p.attention_factor = get_num(j, "attention_factor", 1.0);
  // transformers: `rope_parameters_dict.get("beta_fast") or 32` (a 0 also falls back).
  p.beta_fast = get_num(j, "beta_fast", 0.0) != 0.0 ? get_num(j, "beta_fast", 0.0) : 32.0;
  p.beta_slow = get_num(j, "beta_slow", 0.0) != 0.0 ? get_num(j, "beta_slow", 0.0) : 1.0;
  p.has_original_max_position_embeddings = has(j, "original_max_position_embeddings");
  p.original_max_position_embeddings = get_int(j, "original_max_position_embeddings", 0);
  p.mscale = get_num(j, "mscale", 0.0);
  p.mscale_all_dim = get_num(j, "mscale_all_dim", 0.0);
  p.truncate = j.value("truncate", true);
  return p;
}

}  // namespace

const char* attention_kind_name(AttentionKind kind) {
  switch (kind) {
    case AttentionKind::kSliding:
      return "sliding_attention";
    case AttentionKind::kCompressedSparse:
      return "compressed_sparse_attention";
    case AttentionKind::kHeavilyCompressed:
      return "heavily_compressed_attention";
  }
  return "?";
}

ForwardConfig ForwardConfig::from_json(const json& j, const std::string& what) {
  QF_CHECK(j.is_object(), what, ": config is not a JSON object");
  ForwardConfig c;
  // Defaults: DeepseekV4Config class attributes (V4-Flash).
  c.vocab_size = get_int(j, "vocab_size", 129280);
  c.hidden_size = get_int(j, "hidden_size", 4096);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", 43);
  c.num_attention_heads = get_int(j, "num_attention_heads", 64);
  c.head_dim = get_int(j, "head_dim", 512);
  c.q_lora_rank = get_int(j, "q_lora_rank", 1024);
  c.o_groups = get_int(j, "o_groups", 8);
  c.o_lora_rank = get_int(j, "o_lora_rank", 1024);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", 1048576);
  c.sliding_window = get_int(j, "sliding_window", 128);
  c.index_n_heads = get_int(j, "index_n_heads", 64);
  c.index_head_dim = get_int(j, "index_head_dim", 128);
  c.index_topk = get_int(j, "index_topk", 512);
  c.n_routed_experts = get_int(j, "n_routed_experts", 256);
  c.n_shared_experts = get_int(j, "n_shared_experts", 1);
  c.num_experts_per_tok = get_int(j, "num_experts_per_tok", 6);
  c.moe_intermediate_size = get_int(j, "moe_intermediate_size", 2048);
  c.routed_scaling_factor = get_num(j, "routed_scaling_factor", 1.5);
  c.norm_topk_prob = j.value("norm_topk_prob", true);
  c.swiglu_limit = get_num(j, "swiglu_limit", 10.0);
  c.hc_mult = get_int(j, "hc_mult", 4);
  c.hc_sinkhorn_iters = get_int(j, "hc_sinkhorn_iters", 20);
  c.hc_eps = get_num(j, "hc_eps", 1e-6);
  c.rms_norm_eps = get_num(j, "rms_norm_eps", 1e-6);
  const int64_t n = c.num_hidden_layers;
  QF_CHECK(n > 0, what, ": num_hidden_layers", n);

  const std::string scoring = j.value("scoring_func", std::string("sqrtsoftplus"));
  if (scoring == "sqrtsoftplus") {
    c.scoring_func = ops::ScoringFunc::kSqrtSoftplus;
  } else if (scoring == "sigmoid") {
    c.scoring_func = ops::ScoringFunc::kSigmoid;
  } else {
    QF_FAIL(what, ": scoring_func not supported by the reference forward:", scoring);
  }

  // compress_rates: dict, legacy scalar overrides folded in.
  if (has(j, "compress_rates")) {
    const json& r = j.at("compress_rates");
    c.compress_rate_csa = get_int(r, "compressed_sparse_attention", 4);
    c.compress_rate_hca = get_int(r, "heavily_compressed_attention", 128);
  }
  c.compress_rate_csa = get_int(j, "compress_rate_csa", c.compress_rate_csa);
  c.compress_rate_hca = get_int(j, "compress_rate_hca", c.compress_rate_hca);

  // layer_types: explicit > legacy compress_ratios (0/4/128) > 2x HCA + CSA/HCA interleave.
  if (has(j, "layer_types")) {
    for (const auto& t : j.at("layer_types")) {
      c.layer_types.push_back(parse_attention_kind(t.get<std::string>(), what));
    }
  } else if (has(j, "compress_ratios")) {
    for (const auto& r : j.at("compress_ratios")) {
      const int64_t ratio = r.get<int64_t>();
      if (ratio == 0) {
        c.layer_types.push_back(AttentionKind::kSliding);
      } else if (ratio == 4) {
        c.layer_types.push_back(AttentionKind::kCompressedSparse);
      } else if (ratio == 128) {
        c.layer_types.push_back(AttentionKind::kHeavilyCompressed);
      } else {
        QF_FAIL(what, ": compress_ratios entry", ratio, "is not 0, 4 or 128");
      }
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      c.layer_types.push_back(i < 2 || (i - 2) % 2 == 0 ? AttentionKind::kHeavilyCompressed
                                                        : AttentionKind::kCompressedSparse);
    }
  }
  QF_CHECK(static_cast<int64_t>(c.layer_types.size()) >= n, what, ": layer_types has",
           c.layer_types.size(), "entries for", n, "layers");
  c.layer_types.resize(n);

  if (has(j, "mlp_layer_types")) {
    for (const auto& t : j.at("mlp_layer_types")) {
      const std::string s = t.get<std::string>();
      QF_CHECK(s == "hash_moe" || s == "moe", what, ": unknown mlp layer type", s);
      c.mlp_layer_types.push_back(s == "hash_moe" ? MoeKind::kHash : MoeKind::kTopK);
    }
  } else {
    const int64_t n_hash = get_int(j, "num_hash_layers", 3);
    for (int64_t i = 0; i < n; ++i) {
      c.mlp_layer_types.push_back(i < n_hash ? MoeKind::kHash : MoeKind::kTopK);
    }
  }
  QF_CHECK(static_cast<int64_t>(c.mlp_layer_types.size()) >= n, what, ": mlp_layer_types has",
           c.mlp_layer_types.size(), "entries for", n, "layers");
  c.mlp_layer_types.resize(n);

  // partial_rotary_factor: explicit > qk_rope_head_dim / head_dim > 64 / 512.
  double prf = 64.0 / 512.0;
  if (has(j, "partial_rotary_factor")) {
    prf = j.at("partial_rotary_factor").get<double>();
  } else if (has(j, "qk_rope_head_dim")) {
    prf = static_cast<double>(j.at("qk_rope_head_dim").get<int64_t>()) / c.head_dim;
  }
  c.rope_head_dim = static_cast<int64_t>(c.head_dim * prf);

  // rope_parameters: nested {main, compress} as saved by transformers, else built the way
  // __post_init__ does from rope_theta / compress_rope_theta / a flat rope dict (YaRN).
  const json rp = has(j, "rope_parameters") ? j.at("rope_parameters")
                  : has(j, "rope_scaling")  ? j.at("rope_scaling")
                                            : json::object();
  if (rp.contains("main") && rp.at("main").is_object() && rp.contains("compress") &&
      rp.at("compress").is_object()) {
    c.rope_main = parse_rope(rp.at("main"), prf, what + " rope_parameters.main");
    c.rope_compress = parse_rope(rp.at("compress"), prf, what + " rope_parameters.compress");
  } else {
    json main = {{"rope_type", "default"},
                 {"rope_theta", get_num(j, "rope_theta", 10000.0)},
                 {"partial_rotary_factor", prf}};
    json compress = json::object();
    for (const auto& [key, value] : rp.items()) {
      if (key != "main" && key != "compress") compress[key] = value;
    }
    compress["rope_theta"] = get_num(j, "compress_rope_theta", 160000.0);
    compress["partial_rotary_factor"] = prf;
    if (!compress.contains("rope_type")) compress["rope_type"] = compress.value("type", "default");
    if (compress["rope_type"] == "yarn" && !compress.contains("attention_factor")) {
      compress["attention_factor"] = 1.0;  // V4: no YaRN mscale on cos/sin
    }
    c.rope_main = parse_rope(main, prf, what + " rope main");
    c.rope_compress = parse_rope(compress, prf, what + " rope compress");
  }
  for (const ops::RopeParams* p : {&c.rope_main, &c.rope_compress}) {
    const auto dim = static_cast<int64_t>(c.head_dim * p->partial_rotary_factor);
    QF_CHECK(dim == c.rope_head_dim, what, ": rope dims differ between rope types:", dim, "vs",
             c.rope_head_dim);
  }

  QF_CHECK(c.rope_head_dim > 0 && c.rope_head_dim % 2 == 0 && c.rope_head_dim <= c.head_dim &&
               c.rope_head_dim <= c.index_head_dim,
           what, ": bad rope head dim", c.rope_head_dim);
  QF_CHECK(c.num_attention_heads * c.head_dim % c.o_groups == 0, what,
           ": heads * head_dim not divisible by o_groups");
  QF_CHECK(
      c.n_shared_experts == 1, what,
      ": transformers builds exactly one shared expert; n_shared_experts =", c.n_shared_experts);
  QF_CHECK(c.num_experts_per_tok > 0 && c.num_experts_per_tok <= c.n_routed_experts, what,
           ": num_experts_per_tok", c.num_experts_per_tok);
  QF_CHECK(c.hc_mult >= 1 && c.hc_sinkhorn_iters >= 1, what, ": bad hc_mult / sinkhorn iters");
  return c;
}

int64_t ForwardConfig::compress_rate(int layer) const {
  switch (layer_types.at(layer)) {
    case AttentionKind::kSliding:
      return 0;
    case AttentionKind::kCompressedSparse:
      return compress_rate_csa;
    case AttentionKind::kHeavilyCompressed:
      return compress_rate_hca;
  }
  return 0;
}

const ops::RopeParams& ForwardConfig::rope_for_layer(int layer) const {
  return layer_types.at(layer) == AttentionKind::kSliding ? rope_main : rope_compress;
}

}  // namespace qf::model
