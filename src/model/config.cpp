// Parsing, validation and serialisation of the DeepSeek V4 config.json (see config.hpp).
// Sources for the fields and defaults: transformers 5.17 configuration_deepseek_v4.py (field
// list, defaults, legacy spellings compress_ratios / num_hash_layers / qk_rope_head_dim), the
// released DeepSeek-V4-Flash config.json (native spelling), DeepSeek inference/model.py.
#include "model/config.hpp"

#include <cmath>
#include <sstream>

#include "core/check.hpp"
#include "formats/atomic_file.hpp"

namespace qf::model {
namespace {

using nlohmann::json;

// -------------------------------------------------------------------------------------------
// Typed field readers: every failure names the file and the field.

const json* find_field(const json& j, const char* key) {
  const auto it = j.find(key);
  return (it == j.end() || it->is_null()) ? nullptr : &*it;
}

int64_t read_int(const json& j, const char* key, const std::string& src, const int64_t* dflt) {
  const json* v = find_field(j, key);
  if (!v) {
    QF_CHECK(dflt != nullptr, src + ":", "required field", key, "is missing");
    return *dflt;
  }
  if (v->is_number_float()) {
    const double d = v->get<double>();
    QF_CHECK(std::floor(d) == d && std::fabs(d) < 9e15, src + ":", "field", key,
             "must be an integer, got", v->dump());
    return static_cast<int64_t>(d);
  }
  QF_CHECK(v->is_number_integer(), src + ":", "field", key, "must be an integer, got", v->dump());
  return v->get<int64_t>();
}

int64_t req_int(const json& j, const char* key, const std::string& src) {
  return read_int(j, key, src, nullptr);
}
int64_t opt_int(const json& j, const char* key, const std::string& src, int64_t dflt) {
  return read_int(j, key, src, &dflt);
}

double opt_double(const json& j, const char* key, const std::string& src, double dflt) {
  const json* v = find_field(j, key);
  if (!v) return dflt;
  QF_CHECK(v->is_number(), src + ":", "field", key, "must be a number, got", v->dump());
  return v->get<double>();
}

bool opt_bool(const json& j, const char* key, const std::string& src, bool dflt) {
  const json* v = find_field(j, key);
  if (!v) return dflt;
  QF_CHECK(v->is_boolean(), src + ":", "field", key, "must be true or false, got", v->dump());
  return v->get<bool>();
}

std::string opt_string(const json& j, const char* key, const std::string& src,
                       const std::string& dflt) {
  const json* v = find_field(j, key);
  if (!v) return dflt;
  QF_CHECK(v->is_string(), src + ":", "field", key, "must be a string, got", v->dump());
  return v->get<std::string>();
}

int to_int32(int64_t v, const char* key, const std::string& src) {
  QF_CHECK(v >= -(int64_t{1} << 31) && v < (int64_t{1} << 31), src + ":", "field", key,
           "is out of range:", v);
  return static_cast<int>(v);
}

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

// -------------------------------------------------------------------------------------------
// Layer schedules in either spelling.

constexpr const char* kLayerTypeNames[] = {"sliding_attention", "compressed_sparse_attention",
                                           "heavily_compressed_attention"};

std::vector<int> read_compress_ratios(const json& j, int n_layers, const std::string& src) {
  std::vector<int> ratios;
  if (const json* v = find_field(j, "compress_ratios")) {
    QF_CHECK(v->is_array(), src + ":", "field compress_ratios must be a list of integers");
    for (size_t i = 0; i < v->size(); ++i) {
      const json& e = (*v)[i];
      QF_CHECK(e.is_number_integer(), src + ":", "field compress_ratios[" + std::to_string(i) + "]",
               "must be an integer, got", e.dump());
      ratios.push_back(e.get<int>());
    }
  } else if (const json* lt = find_field(j, "layer_types")) {
    // transformers spelling: per-type rates from compress_rates (defaults 4 / 128).
    int csa_rate = 4, hca_rate = 128;
    if (const json* rates = find_field(j, "compress_rates")) {
      QF_CHECK(rates->is_object(), src + ":", "field compress_rates must be an object");
      csa_rate = to_int32(opt_int(*rates, "compressed_sparse_attention", src, 4),
                          "compress_rates.compressed_sparse_attention", src);
      hca_rate = to_int32(opt_int(*rates, "heavily_compressed_attention", src, 128),
                          "compress_rates.heavily_compressed_attention", src);
    }
    QF_CHECK(lt->is_array(), src + ":", "field layer_types must be a list of strings");
    for (size_t i = 0; i < lt->size(); ++i) {
      const json& e = (*lt)[i];
      const std::string s = e.is_string() ? e.get<std::string>() : "";
      const std::string field = "layer_types[" + std::to_string(i) + "]";
      if (s == kLayerTypeNames[0]) {
        ratios.push_back(0);
      } else if (s == kLayerTypeNames[1]) {
        ratios.push_back(csa_rate);
      } else if (s == kLayerTypeNames[2]) {
        ratios.push_back(hca_rate);
      } else {
        QF_FAIL(src + ":", "field", field, "must be one of sliding_attention,",
                "compressed_sparse_attention, heavily_compressed_attention; got", e.dump());
      }
    }
  } else {
    QF_FAIL(src + ":", "required field compress_ratios (or transformers' layer_types) is missing");
  }
  QF_CHECK(static_cast<int>(ratios.size()) >= n_layers, src + ":", "field compress_ratios has",
           ratios.size(), "entries, fewer than num_hidden_layers =", n_layers);
  return ratios;
}

int read_num_hash_layers(const json& j, int n_layers, const std::string& src) {
  if (find_field(j, "num_hash_layers")) {
    return to_int32(req_int(j, "num_hash_layers", src), "num_hash_layers", src);
  }
  const json* v = find_field(j, "mlp_layer_types");
  QF_CHECK(v != nullptr, src + ":",
           "required field num_hash_layers (or transformers' mlp_layer_types) is missing");
  QF_CHECK(v->is_array(), src + ":", "field mlp_layer_types must be a list of strings");
  int n_hash = 0;
  bool in_prefix = true;
  for (size_t i = 0; i < v->size() && static_cast<int>(i) < n_layers; ++i) {
    const json& e = (*v)[i];
    const std::string s = e.is_string() ? e.get<std::string>() : "";
    const std::string field = "mlp_layer_types[" + std::to_string(i) + "]";
    QF_CHECK(s == "hash_moe" || s == "moe", src + ":", "field", field,
             "must be hash_moe or moe, got", e.dump());
    // DeepSeek's model.py routes by hash exactly for layer_id < n_hash_layers.
    QF_CHECK(!(s == "hash_moe" && !in_prefix), src + ":", "field", field,
             "hash_moe after a moe layer is not supported (hash layers must come first)");
    if (s == "hash_moe")
      ++n_hash;
    else
      in_prefix = false;
  }
  return n_hash;
}

RopeScaling read_rope_scaling(const json& j, const std::string& src) {
  RopeScaling r;
  const json* v = find_field(j, "rope_scaling");
  std::string label = "rope_scaling";
  if (!v) {
    // transformers spelling: rope_parameters.compress carries the YaRN fields.
    const json* rp = find_field(j, "rope_parameters");
    if (rp && rp->is_object()) v = find_field(*rp, "compress");
    label = "rope_parameters.compress";
    if (!v) return r;
  }
  QF_CHECK(v->is_object(), src + ":", "field", label, "must be an object");
  r.type = opt_string(*v, "type", src, opt_string(*v, "rope_type", src, ""));
  if (r.type == "default") r.type.clear();
  r.factor = opt_double(*v, "factor", src, 1.0);
  r.original_max_position_embeddings = opt_int(*v, "original_max_position_embeddings", src, 0);
  r.beta_fast = opt_double(*v, "beta_fast", src, 32.0);
  r.beta_slow = opt_double(*v, "beta_slow", src, 1.0);
  return r;
}

}  // namespace

const char* attn_type_name(AttnType type) {
  switch (type) {
    case AttnType::kSliding:
      return "sliding";
    case AttnType::kCsa:
      return "csa";
    case AttnType::kHca:
      return "hca";
  }
  return "?";
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& src) {
  QF_CHECK(j.is_object(), src + ":", "config must be a JSON object");
  ModelConfig c;
  c.raw = j;
  c.model_type = opt_string(j, "model_type", src, "");
  QF_CHECK(!c.model_type.empty(), src + ":", "required field model_type is missing");
  c.torch_dtype = opt_string(j, "torch_dtype", src, opt_string(j, "dtype", src, ""));
  c.vocab_size = req_int(j, "vocab_size", src);
  c.hidden_size = req_int(j, "hidden_size", src);
  c.num_hidden_layers = to_int32(req_int(j, "num_hidden_layers", src), "num_hidden_layers", src);
  c.num_attention_heads =
      to_int32(req_int(j, "num_attention_heads", src), "num_attention_heads", src);
  c.num_key_value_heads =
      to_int32(opt_int(j, "num_key_value_heads", src, 1), "num_key_value_heads", src);
  c.head_dim = req_int(j, "head_dim", src);
  c.q_lora_rank = req_int(j, "q_lora_rank", src);
  if (find_field(j, "qk_rope_head_dim") || !find_field(j, "partial_rotary_factor")) {
    c.qk_rope_head_dim = opt_int(j, "qk_rope_head_dim", src, c.head_dim / 8);
  } else {
    c.qk_rope_head_dim = static_cast<int64_t>(static_cast<double>(c.head_dim) *
                                              opt_double(j, "partial_rotary_factor", src, 0.125));
  }
  c.o_groups = to_int32(req_int(j, "o_groups", src), "o_groups", src);
  c.o_lora_rank = req_int(j, "o_lora_rank", src);
  c.index_n_heads = to_int32(req_int(j, "index_n_heads", src), "index_n_heads", src);
  c.index_head_dim = req_int(j, "index_head_dim", src);
  c.n_routed_experts = to_int32(req_int(j, "n_routed_experts", src), "n_routed_experts", src);
  c.n_shared_experts = to_int32(opt_int(j, "n_shared_experts", src, 1), "n_shared_experts", src);
  c.num_experts_per_tok =
      to_int32(req_int(j, "num_experts_per_tok", src), "num_experts_per_tok", src);
  c.moe_intermediate_size = req_int(j, "moe_intermediate_size", src);
  c.hc_mult = to_int32(req_int(j, "hc_mult", src), "hc_mult", src);
  c.num_nextn_predict_layers =
      to_int32(req_int(j, "num_nextn_predict_layers", src), "num_nextn_predict_layers", src);
  c.tie_word_embeddings = opt_bool(j, "tie_word_embeddings", src, false);
  QF_CHECK(c.num_hidden_layers > 0, src + ":", "field num_hidden_layers must be positive, got",
           c.num_hidden_layers);
  QF_CHECK(c.num_nextn_predict_layers >= 0, src + ":",
           "field num_nextn_predict_layers must be >= 0, got", c.num_nextn_predict_layers);
  c.compress_ratios = read_compress_ratios(j, c.num_hidden_layers, src);
  if (static_cast<int>(c.compress_ratios.size()) < c.n_layers_total()) {
    c.compress_ratios.resize(c.n_layers_total(), 0);
  }
  c.num_hash_layers = read_num_hash_layers(j, c.num_hidden_layers, src);

  c.sliding_window = opt_int(j, "sliding_window", src, 128);
  c.index_topk = to_int32(opt_int(j, "index_topk", src, 512), "index_topk", src);
  c.max_position_embeddings = opt_int(j, "max_position_embeddings", src, 1048576);
  c.rope_theta = opt_double(j, "rope_theta", src, 10000.0);
  c.compress_rope_theta = opt_double(j, "compress_rope_theta", src, 160000.0);
  c.rope_scaling = read_rope_scaling(j, src);
  c.scoring_func = opt_string(j, "scoring_func", src, "sqrtsoftplus");
  c.topk_method = opt_string(j, "topk_method", src, "");
  c.routed_scaling_factor = opt_double(j, "routed_scaling_factor", src, 1.5);
  c.norm_topk_prob = opt_bool(j, "norm_topk_prob", src, true);
  c.swiglu_limit = opt_double(j, "swiglu_limit", src, 10.0);
  c.hc_sinkhorn_iters =
      to_int32(opt_int(j, "hc_sinkhorn_iters", src, 20), "hc_sinkhorn_iters", src);
  c.hc_eps = opt_double(j, "hc_eps", src, 1e-6);
  c.rms_norm_eps = opt_double(j, "rms_norm_eps", src, 1e-6);
  c.hidden_act = opt_string(j, "hidden_act", src, "silu");
  c.expert_dtype = opt_string(j, "expert_dtype", src, "fp4");
  if (const json* q = find_field(j, "quantization_config")) {
    QF_CHECK(q->is_object(), src + ":", "field quantization_config must be an object, got",
             q->dump());
    c.quantization_config = *q;
  }
  c.validate(src);
  return c;
}

ModelConfig ModelConfig::load(const std::string& path) {
  return from_json(formats::read_json_file(path), path);
}

void ModelConfig::validate(const std::string& src) const {
  const std::string s = src + ":";
  QF_CHECK(model_type == "deepseek_v4", s, "field model_type must be \"deepseek_v4\", got",
           "\"" + model_type + "\"");
  auto positive = [&](int64_t v, const char* key) {
    QF_CHECK(v > 0, s, "field", key, "must be positive, got", v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(head_dim, "head_dim");
  positive(q_lora_rank, "q_lora_rank");
  positive(o_groups, "o_groups");
  positive(o_lora_rank, "o_lora_rank");
  positive(index_n_heads, "index_n_heads");
  positive(index_head_dim, "index_head_dim");
  positive(n_routed_experts, "n_routed_experts");
  positive(num_experts_per_tok, "num_experts_per_tok");
  positive(moe_intermediate_size, "moe_intermediate_size");
  positive(hc_mult, "hc_mult");
  positive(hc_sinkhorn_iters, "hc_sinkhorn_iters");
  positive(sliding_window, "sliding_window");
  positive(index_topk, "index_topk");
  QF_CHECK(num_nextn_predict_layers >= 0, s, "field num_nextn_predict_layers must be >= 0");
  // V4 attention is single-KV-head MQA: wkv has head_dim rows (model.py Attention).
  QF_CHECK(num_key_value_heads == 1, s, "field num_key_value_heads must be 1 (DeepSeek V4 is MQA),",
           "got", num_key_value_heads);
  // model.py MoE: `assert args.n_shared_experts == 1`.
  QF_CHECK(n_shared_experts == 1, s, "field n_shared_experts must be 1, got", n_shared_experts);
  QF_CHECK(num_experts_per_tok <= n_routed_experts, s, "field num_experts_per_tok (",
           num_experts_per_tok, ") exceeds n_routed_experts (", n_routed_experts, ")");
  QF_CHECK(num_hash_layers >= 0 && num_hash_layers <= num_hidden_layers, s,
           "field num_hash_layers must be in [0, num_hidden_layers], got", num_hash_layers);
  QF_CHECK(int64_t{num_attention_heads} * head_dim % o_groups == 0, s,
           "num_attention_heads * head_dim =", int64_t{num_attention_heads} * head_dim,
           "is not divisible by field o_groups =", o_groups);
  QF_CHECK(qk_rope_head_dim >= 0 && qk_rope_head_dim <= head_dim && qk_rope_head_dim % 2 == 0, s,
           "field qk_rope_head_dim must be even and in [0, head_dim], got", qk_rope_head_dim);
  QF_CHECK(static_cast<int>(compress_ratios.size()) >= n_layers_total(), s,
           "compress_ratios shorter than the layer count");
  for (size_t i = 0; i < compress_ratios.size(); ++i) {
    const int r = compress_ratios[i];
    QF_CHECK(r == 0 || r == 4 || r == 128, s, "field compress_ratios[" + std::to_string(i) + "]",
             "must be 0, 4 or 128 (sliding / CSA / HCA), got", r);
  }
  QF_CHECK(expert_dtype == "fp4" || expert_dtype == "fp8", s,
           "field expert_dtype must be \"fp4\" or \"fp8\", got", "\"" + expert_dtype + "\"");
  if (expert_dtype == "fp4") {
    // FP4 experts: two codes per byte and one UE8M0 scale per 32 inputs (FORMATS.md §4).
    QF_CHECK(hidden_size % 32 == 0 && moe_intermediate_size % 32 == 0, s,
             "FP4 experts need hidden_size and moe_intermediate_size divisible by 32, got",
             hidden_size, "and", moe_intermediate_size);
  }
  QF_CHECK(scoring_func == "sqrtsoftplus" || scoring_func == "softmax" || scoring_func == "sigmoid",
           s, "field scoring_func must be sqrtsoftplus, softmax or sigmoid, got", scoring_func);
  if (has_quantization_config()) {
    const json& q = quantization_config;
    const std::string method = q.value("quant_method", std::string());
    QF_CHECK(method == "fp8", s, "field quantization_config.quant_method must be \"fp8\" for a",
             "native DeepSeek V4 checkpoint, got", "\"" + method + "\"");
    if (const json* wbs = find_field(q, "weight_block_size")) {
      QF_CHECK(*wbs == json::array({128, 128}), s,
               "field quantization_config.weight_block_size must be [128, 128], got", wbs->dump());
    }
  }
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
  if (out.contains("layer_types") && !out.contains("compress_ratios")) {
    json types = json::array();
    for (int l = 0; l < num_hidden_layers; ++l) {
      types.push_back(kLayerTypeNames[static_cast<int>(attn_type(l))]);
    }
    out["layer_types"] = types;
  } else {
    out["compress_ratios"] = compress_ratios;
  }
  if (out.contains("mlp_layer_types") && !out.contains("num_hash_layers")) {
    json types = json::array();
    for (int l = 0; l < num_hidden_layers; ++l)
      types.push_back(is_hash_layer(l) ? "hash_moe" : "moe");
    out["mlp_layer_types"] = types;
  } else {
    out["num_hash_layers"] = num_hash_layers;
  }
  out["sliding_window"] = sliding_window;
  out["max_position_embeddings"] = max_position_embeddings;
  set_number(out, "rope_theta", rope_theta);
  set_number(out, "compress_rope_theta", compress_rope_theta);
  if (!rope_scaling.type.empty() &&
      (out.contains("rope_scaling") || !out.contains("rope_parameters"))) {
    json r = out.value("rope_scaling", json::object());
    if (r.contains("rope_type") && !r.contains("type"))
      r["rope_type"] = rope_scaling.type;
    else
      r["type"] = rope_scaling.type;
    set_number(r, "factor", rope_scaling.factor);
    r["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
    set_number(r, "beta_fast", rope_scaling.beta_fast);
    set_number(r, "beta_slow", rope_scaling.beta_slow);
    out["rope_scaling"] = r;
  }
  out["scoring_func"] = scoring_func;
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

int ModelConfig::compress_ratio(int layer) const {
  QF_CHECK(layer >= 0 && layer < n_layers_total(), "layer", layer, "out of range [0,",
           n_layers_total(), ")");
  return compress_ratios[static_cast<size_t>(layer)];
}

AttnType ModelConfig::attn_type(int layer) const {
  const int r = compress_ratio(layer);
  return r == 0 ? AttnType::kSliding : (r == 4 ? AttnType::kCsa : AttnType::kHca);
}

bool ModelConfig::is_hash_layer(int layer) const {
  return layer >= 0 && layer < num_hidden_layers && layer < num_hash_layers;
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
    const AttnType t = attn_type(l);
    n_sliding += t == AttnType::kSliding;
    n_csa += t == AttnType::kCsa;
    n_hca += t == AttnType::kHca;
  }
  std::ostringstream out;
  out << "model_type        " << model_type << "\n"
      << "layers            " << num_hidden_layers << " (+" << num_nextn_predict_layers
      << " MTP): " << n_sliding << " sliding, " << n_csa << " CSA (ratio 4 + indexer), " << n_hca
      << " HCA (ratio 128); " << num_hash_layers << " hash-routed\n"
      << "hidden / vocab    " << hidden_size << " / " << vocab_size << "\n"
      << "attention         " << num_attention_heads << " heads x " << head_dim << " (rope "
      << qk_rope_head_dim << "), q_lora_rank " << q_lora_rank << ", o_groups " << o_groups
      << " x o_lora_rank " << o_lora_rank << ", window " << sliding_window << "\n"
      << "indexer           " << index_n_heads << " heads x " << index_head_dim << ", topk "
      << index_topk << "\n"
      << "experts           " << n_routed_experts << " routed (top " << num_experts_per_tok
      << ") + " << n_shared_experts << " shared, intermediate " << moe_intermediate_size << ", "
      << scoring_func << " x " << routed_scaling_factor << "\n"
      << "hyper-connections hc_mult " << hc_mult << ", sinkhorn " << hc_sinkhorn_iters << "\n"
      << "expert_dtype      " << expert_dtype << "\n"
      << "quantization      " << quant_method();
  if (has_quantization_config()) out << " " << quantization_config.dump();
  out << "\n";
  return out.str();
}

}  // namespace qf::model
