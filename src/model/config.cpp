// ModelConfig: serialisation (to_json keeps the file's spelling), the per-layer derived facts
// and the summary (see config.hpp). Parsing is config_parse.cpp, validation config_validate.cpp.
#include "model/config.hpp"

#include <cmath>
#include <sstream>

#include "core/check.hpp"
#include "formats/atomic_file.hpp"

namespace qf::model {
namespace {

using nlohmann::json;

// Writes a number keeping the raw file's integer spelling where the value is integral.
void set_number(json& out, const char* key, double value) {
  const auto it = out.find(key);
  const bool was_int = it != out.end() && it->is_number_integer();
  if (was_int && std::floor(value) == value && std::fabs(value) < 9e15) {
    out[key] = static_cast<int64_t>(value);
  } else {
    out[key] = value;
  }
}

// Writes `value` unless the object already says it (or says nothing and `value` is the default):
// fields the parser folds in are written only when they changed.
void set_if_changed(json& out, const char* key, int value, int dflt) {
  const auto it = out.find(key);
  const bool present = it != out.end() && !it->is_null();
  if (present ? (*it != value) : (value != dflt)) out[key] = value;
}

void write_schedules(const ModelConfig& c, json& out) {
  // transformers' spelling where the file uses it, or where rates other than the native 4 / 128
  // cannot be spelled as compress_ratios.
  const bool native_rates = c.compress_rate_csa == 4 && c.compress_rate_hca == 128;
  if (!out.contains("compress_ratios") && (out.contains("layer_types") || !native_rates)) {
    json types = json::array();
    for (int l = 0; l < c.num_hidden_layers; ++l) {
      types.push_back(attention_kind_name(c.attention_kind(l)));
    }
    out["layer_types"] = types;
    json rates = out.value("compress_rates", json::object());
    set_if_changed(rates, "compressed_sparse_attention", c.compress_rate_csa, 4);
    set_if_changed(rates, "heavily_compressed_attention", c.compress_rate_hca, 128);
    if (!rates.empty()) out["compress_rates"] = rates;
  } else {
    json ratios = json::array();
    for (size_t l = 0; l < c.attention_kinds.size(); ++l) {
      ratios.push_back(c.compress_ratio(static_cast<int>(l)));
    }
    out["compress_ratios"] = ratios;
  }
  if (out.contains("mlp_layer_types") && !out.contains("num_hash_layers")) {
    json types = json::array();
    for (int l = 0; l < c.num_hidden_layers; ++l)
      types.push_back(c.is_hash_layer(l) ? "hash_moe" : "moe");
    out["mlp_layer_types"] = types;
  } else {
    out["num_hash_layers"] = c.num_hash_layers;
  }
}

// The native spelling keeps the compressed branches' YaRN in rope_scaling; transformers' nested
// rope_parameters are kept as read.
void write_rope(const ModelConfig& c, json& out) {
  set_number(out, "rope_theta", c.rope_main.rope_theta);
  set_number(out, "compress_rope_theta", c.rope_compress.rope_theta);
  const ops::RopeParams& p = c.rope_compress;
  if (p.rope_type == "default" ||
      (out.contains("rope_parameters") && !out.contains("rope_scaling"))) {
    return;
  }
  json r = out.value("rope_scaling", json::object());
  if (r.contains("rope_type") && !r.contains("type"))
    r["rope_type"] = p.rope_type;
  else
    r["type"] = p.rope_type;
  set_number(r, "factor", p.factor);
  if (p.has_original_max_position_embeddings) {
    r["original_max_position_embeddings"] = p.original_max_position_embeddings;
  }
  set_number(r, "beta_fast", p.beta_fast);
  set_number(r, "beta_slow", p.beta_slow);
  out["rope_scaling"] = r;
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

const char* scoring_func_name(ops::ScoringFunc func) {
  switch (func) {
    case ops::ScoringFunc::kSqrtSoftplus:
      return "sqrtsoftplus";
    case ops::ScoringFunc::kSigmoid:
      return "sigmoid";
    case ops::ScoringFunc::kSoftmax:
      return "softmax";
  }
  return "?";
}

ModelConfig ModelConfig::load(const std::string& path) {
  return from_json(formats::read_json_file(path), path);
}

json ModelConfig::to_json() const {
  json out = raw.is_object() ? raw : json::object();
  out["model_type"] = model_type;
  if (!torch_dtype.empty() && !out.contains("dtype")) out["torch_dtype"] = torch_dtype;
  out["vocab_size"] = vocab_size;
  out["hidden_size"] = hidden_size;
  out["num_hidden_layers"] = num_hidden_layers;
  out["num_attention_heads"] = num_attention_heads;
  out["num_key_value_heads"] = num_key_value_heads;
  out["head_dim"] = head_dim;
  out["q_lora_rank"] = q_lora_rank;
  if (out.contains("partial_rotary_factor") && !out.contains("qk_rope_head_dim")) {
    out["partial_rotary_factor"] = static_cast<double>(qk_rope_head_dim) / head_dim;
  } else {
    out["qk_rope_head_dim"] = qk_rope_head_dim;
  }
  out["o_groups"] = o_groups;
  out["o_lora_rank"] = o_lora_rank;
  out["index_n_heads"] = index_n_heads;
  out["index_head_dim"] = index_head_dim;
  out["index_topk"] = index_topk;
  out["n_routed_experts"] = n_routed_experts;
  out["n_shared_experts"] = n_shared_experts;
  out["num_experts_per_tok"] = num_experts_per_tok;
  out["moe_intermediate_size"] = moe_intermediate_size;
  out["hc_mult"] = hc_mult;
  out["hc_sinkhorn_iters"] = hc_sinkhorn_iters;
  set_number(out, "hc_eps", hc_eps);
  out["num_nextn_predict_layers"] = num_nextn_predict_layers;
  out["tie_word_embeddings"] = tie_word_embeddings;
  write_schedules(*this, out);
  out["sliding_window"] = sliding_window;
  out["max_position_embeddings"] = max_position_embeddings;
  write_rope(*this, out);
  out["scoring_func"] = scoring_func_name(scoring_func);
  if (!topk_method.empty()) out["topk_method"] = topk_method;
  set_number(out, "routed_scaling_factor", routed_scaling_factor);
  out["norm_topk_prob"] = norm_topk_prob;
  set_number(out, "swiglu_limit", swiglu_limit);
  set_number(out, "rms_norm_eps", rms_norm_eps);
  out["hidden_act"] = hidden_act;
  out["expert_dtype"] = expert_dtype;
  if (has_quantization_config()) {
    out["quantization_config"] = quantization_config;
  } else {
    out.erase("quantization_config");
  }
  return out;
}

AttentionKind ModelConfig::attention_kind(int layer) const {
  QF_CHECK(layer >= 0 && static_cast<size_t>(layer) < attention_kinds.size(), source + ":", "layer",
           layer, "out of range [0,", attention_kinds.size(), ")");
  return attention_kinds[static_cast<size_t>(layer)];
}

int ModelConfig::compress_ratio(int layer) const {
  switch (attention_kind(layer)) {
    case AttentionKind::kSliding:
      return 0;
    case AttentionKind::kCompressedSparse:
      return compress_rate_csa;
    case AttentionKind::kHeavilyCompressed:
      return compress_rate_hca;
  }
  return 0;
}

bool ModelConfig::is_hash_layer(int layer) const {
  return layer >= 0 && layer < num_hidden_layers && layer < num_hash_layers;
}

const ops::RopeParams& ModelConfig::rope_for_layer(int layer) const {
  return attention_kind(layer) == AttentionKind::kSliding ? rope_main : rope_compress;
}

std::string ModelConfig::layer_prefix(int layer) const {
  QF_CHECK(layer >= 0 && layer < n_layers_total(), "layer", layer, "out of range");
  if (layer < num_hidden_layers) return "layers." + std::to_string(layer);
  return "mtp." + std::to_string(layer - num_hidden_layers);
}

std::string ModelConfig::quant_method() const {
  if (!has_quantization_config()) return "none";
  return quantization_config.value("quant_method", std::string("?"));
}

std::string ModelConfig::summary() const {
  int n_sliding = 0, n_csa = 0, n_hca = 0;
  for (int l = 0; l < num_hidden_layers; ++l) {
    const AttentionKind t = attention_kind(l);
    n_sliding += t == AttentionKind::kSliding;
    n_csa += t == AttentionKind::kCompressedSparse;
    n_hca += t == AttentionKind::kHeavilyCompressed;
  }
  std::ostringstream out;
  out << "model_type        " << model_type << "\n"
      << "layers            " << num_hidden_layers << " (+" << num_nextn_predict_layers
      << " MTP): " << n_sliding << " sliding, " << n_csa << " CSA (ratio " << compress_rate_csa
      << " + indexer), " << n_hca << " HCA (ratio " << compress_rate_hca << "); " << num_hash_layers
      << " hash-routed\n"
      << "hidden / vocab    " << hidden_size << " / " << vocab_size << "\n"
      << "attention         " << num_attention_heads << " heads x " << head_dim << " (rope "
      << qk_rope_head_dim << "), q_lora_rank " << q_lora_rank << ", o_groups " << o_groups
      << " x o_lora_rank " << o_lora_rank << ", window " << sliding_window << "\n"
      << "indexer           " << index_n_heads << " heads x " << index_head_dim << ", topk "
      << index_topk << "\n"
      << "experts           " << n_routed_experts << " routed (top " << num_experts_per_tok
      << ") + " << n_shared_experts << " shared, intermediate " << moe_intermediate_size << ", "
      << scoring_func_name(scoring_func) << " x " << routed_scaling_factor << "\n"
      << "hyper-connections hc_mult " << hc_mult << ", sinkhorn " << hc_sinkhorn_iters << "\n"
      << "expert_dtype      " << expert_dtype << "\n"
      << "quantization      " << quant_method();
  if (has_quantization_config()) out << " " << quantization_config.dump();
  out << "\n";
  return out.str();
}

}  // namespace qf::model
