// ModelConfig::from_json: config.json in transformers 5.17's spelling or the native one, read as
// DeepseekV4Config.__post_init__ reads it (defaults, legacy keys), every value range-checked as it
// is read, then validate(). Does not own: the limits (config_limits.hpp) or serialisation.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "model/config.hpp"
#include "model/config_fields.hpp"
#include "model/config_limits.hpp"

namespace qf::model {
namespace {

using detail::ConfigFields;
using detail::fail_field;
using detail::value_text;
using nlohmann::json;
namespace lim = limits;

// No per-layer list may be longer than the most layers a config may have.
constexpr int64_t kMaxListEntries = lim::kNumHiddenLayers.max + lim::kNumNextnPredictLayers.max;

void read_shapes(const ConfigFields& f, ModelConfig& c) {
  c.vocab_size = f.integer("vocab_size", lim::kVocabSize, c.vocab_size);
  c.hidden_size = f.integer("hidden_size", lim::kHiddenSize, c.hidden_size);
  c.num_hidden_layers =
      f.narrow_integer("num_hidden_layers", lim::kNumHiddenLayers, c.num_hidden_layers);
  c.num_nextn_predict_layers = f.narrow_integer(
      "num_nextn_predict_layers", lim::kNumNextnPredictLayers, c.num_nextn_predict_layers);
  c.num_attention_heads =
      f.narrow_integer("num_attention_heads", lim::kNumAttentionHeads, c.num_attention_heads);
  c.num_key_value_heads =
      f.narrow_integer("num_key_value_heads", lim::kNumKeyValueHeads, c.num_key_value_heads);
  c.head_dim = f.integer("head_dim", lim::kHeadDim, c.head_dim);
  c.q_lora_rank = f.integer("q_lora_rank", lim::kQLoraRank, c.q_lora_rank);
  c.o_groups = f.narrow_integer("o_groups", lim::kOGroups, c.o_groups);
  c.o_lora_rank = f.integer("o_lora_rank", lim::kOLoraRank, c.o_lora_rank);
  c.index_n_heads = f.narrow_integer("index_n_heads", lim::kIndexNHeads, c.index_n_heads);
  c.index_head_dim = f.integer("index_head_dim", lim::kIndexHeadDim, c.index_head_dim);
  c.n_routed_experts =
      f.narrow_integer("n_routed_experts", lim::kNRoutedExperts, c.n_routed_experts);
  c.n_shared_experts =
      f.narrow_integer("n_shared_experts", lim::kNSharedExperts, c.n_shared_experts);
  c.num_experts_per_tok =
      f.narrow_integer("num_experts_per_tok", lim::kNumExpertsPerTok, c.num_experts_per_tok);
  c.moe_intermediate_size =
      f.integer("moe_intermediate_size", lim::kMoeIntermediateSize, c.moe_intermediate_size);
  c.hc_mult = f.narrow_integer("hc_mult", lim::kHcMult, c.hc_mult);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", c.tie_word_embeddings);
}

// A list field's entries, refusing a list longer than any config may need.
const json* read_list(const ConfigFields& f, const char* key) {
  const json* v = f.list(key);
  if (v && static_cast<int64_t>(v->size()) > kMaxListEntries) {
    fail_field(f.file(), f.field(key), "a list of " + std::to_string(v->size()) + " entries",
               "exceeds the limit of " + std::to_string(kMaxListEntries) + " entries");
  }
  return v;
}

std::string entry(const ConfigFields& f, const char* key, size_t i) {
  return f.field(key) + "[" + std::to_string(i) + "]";
}

std::vector<AttentionKind> read_layer_types(const ConfigFields& f, const json& list) {
  std::vector<AttentionKind> kinds;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& e = list[i];
    bool known = false;
    for (AttentionKind k : {AttentionKind::kSliding, AttentionKind::kCompressedSparse,
                            AttentionKind::kHeavilyCompressed}) {
      if (e.is_string() && e.get<std::string>() == attention_kind_name(k)) {
        kinds.push_back(k);
        known = true;
      }
    }
    if (!known) {
      fail_field(f.file(), entry(f, "layer_types", i), value_text(e),
                 "must be one of sliding_attention, compressed_sparse_attention, "
                 "heavily_compressed_attention");
    }
  }
  return kinds;
}

// The native schedule: 0 / 4 / 128 per layer (model.py: ratio 4 overlaps and has the indexer).
std::vector<AttentionKind> read_compress_ratios(const ConfigFields& f, const json& list) {
  std::vector<AttentionKind> kinds;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string field = entry(f, "compress_ratios", i);
    const int64_t r = detail::checked_integer(list[i], {0, INT64_MAX}, f.file(), field);
    if (r != 0 && r != 4 && r != 128) {
      fail_field(f.file(), field, std::to_string(r), "must be 0, 4 or 128 (sliding / CSA / HCA)");
    }
    kinds.push_back(
        r == 0 ? AttentionKind::kSliding
               : (r == 4 ? AttentionKind::kCompressedSparse : AttentionKind::kHeavilyCompressed));
  }
  return kinds;
}

// Schedule: explicit layer_types > legacy compress_ratios > transformers' default (two HCA
// layers, then HCA / CSA alternating). Both given: they must agree.
void read_attention_schedule(const ConfigFields& f, ModelConfig& c) {
  if (const json* rates = f.object("compress_rates")) {
    const ConfigFields r(*rates, f.file(), "compress_rates.");
    c.compress_rate_csa =
        r.narrow_integer("compressed_sparse_attention", lim::kCompressRate, c.compress_rate_csa);
    c.compress_rate_hca =
        r.narrow_integer("heavily_compressed_attention", lim::kCompressRate, c.compress_rate_hca);
  }
  // transformers folds these legacy scalars into compress_rates.
  c.compress_rate_csa =
      f.narrow_integer("compress_rate_csa", lim::kCompressRate, c.compress_rate_csa);
  c.compress_rate_hca =
      f.narrow_integer("compress_rate_hca", lim::kCompressRate, c.compress_rate_hca);
  const json* types = read_list(f, "layer_types");
  const json* ratios = read_list(f, "compress_ratios");
  const char* key = ratios ? "compress_ratios" : "layer_types";
  if (ratios) {
    c.attention_kinds = read_compress_ratios(f, *ratios);
    if (c.compress_rate_csa != 4 || c.compress_rate_hca != 128) {
      fail_field(f.file(), "compress_rates",
                 std::to_string(c.compress_rate_csa) + " / " + std::to_string(c.compress_rate_hca),
                 "disagrees with compress_ratios, which implies 4 (CSA) / 128 (HCA)");
    }
  }
  if (types) {
    const std::vector<AttentionKind> kinds = read_layer_types(f, *types);
    for (size_t i = 0; ratios && i < kinds.size() && i < c.attention_kinds.size(); ++i) {
      if (kinds[i] != c.attention_kinds[i]) {
        fail_field(f.file(), entry(f, "layer_types", i), attention_kind_name(kinds[i]),
                   "disagrees with compress_ratios[" + std::to_string(i) + "]");
      }
    }
    if (!ratios) c.attention_kinds = kinds;
  }
  if (!ratios && !types) {
    c.attention_kinds.clear();
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      c.attention_kinds.push_back(i < 2 || (i - 2) % 2 == 0 ? AttentionKind::kHeavilyCompressed
                                                            : AttentionKind::kCompressedSparse);
    }
  }
  if (static_cast<int>(c.attention_kinds.size()) < c.num_hidden_layers) {
    fail_field(f.file(), f.field(key), "a list of " + std::to_string(c.attention_kinds.size()),
               "has fewer entries than num_hidden_layers = " + std::to_string(c.num_hidden_layers));
  }
  if (static_cast<int>(c.attention_kinds.size()) < c.n_layers_total()) {
    c.attention_kinds.resize(c.n_layers_total(), AttentionKind::kSliding);
  }
}

// Hash layers: num_hash_layers, or transformers' mlp_layer_types (a hash_moe prefix, as
// DeepSeek's model.py routes by hash exactly for layer_id < n_hash_layers), else transformers'
// default 3 (capped at the layer count, as its per-layer list is). Both given: they must agree.
void read_hash_layers(const ConfigFields& f, ModelConfig& c) {
  const bool explicit_count = f.has("num_hash_layers");
  c.num_hash_layers = f.narrow_integer("num_hash_layers", lim::kNumHashLayers,
                                       std::min(c.num_hash_layers, c.num_hidden_layers));
  const json* types = read_list(f, "mlp_layer_types");
  if (!types) return;
  if (static_cast<int>(types->size()) < c.num_hidden_layers) {
    fail_field(f.file(), f.field("mlp_layer_types"), "a list of " + std::to_string(types->size()),
               "has fewer entries than num_hidden_layers = " + std::to_string(c.num_hidden_layers));
  }
  int n_hash = 0;
  bool in_prefix = true;
  for (size_t i = 0; i < static_cast<size_t>(c.num_hidden_layers); ++i) {
    const json& e = (*types)[i];
    const std::string s = e.is_string() ? e.get<std::string>() : "";
    if (s != "hash_moe" && s != "moe") {
      fail_field(f.file(), entry(f, "mlp_layer_types", i), value_text(e),
                 "must be hash_moe or moe");
    }
    if (s == "hash_moe" && !in_prefix) {
      fail_field(f.file(), entry(f, "mlp_layer_types", i), value_text(e),
                 "follows a moe layer (hash layers must come first)");
    }
    if (s == "hash_moe") {
      ++n_hash;
    } else {
      in_prefix = false;
    }
  }
  if (explicit_count && n_hash != c.num_hash_layers) {
    fail_field(f.file(), "num_hash_layers", std::to_string(c.num_hash_layers),
               "disagrees with mlp_layer_types (" + std::to_string(n_hash) + " hash_moe layers)");
  }
  c.num_hash_layers = n_hash;
}

void read_numerics(const ConfigFields& f, ModelConfig& c) {
  c.sliding_window = f.integer("sliding_window", lim::kSlidingWindow, c.sliding_window);
  c.index_topk = f.narrow_integer("index_topk", lim::kIndexTopk, c.index_topk);
  c.max_position_embeddings =
      f.integer("max_position_embeddings", lim::kMaxPositionEmbeddings, c.max_position_embeddings);
  const std::string scoring = f.string("scoring_func", scoring_func_name(c.scoring_func));
  bool known = false;
  for (ops::ScoringFunc s :
       {ops::ScoringFunc::kSqrtSoftplus, ops::ScoringFunc::kSigmoid, ops::ScoringFunc::kSoftmax}) {
    if (scoring == scoring_func_name(s)) c.scoring_func = s, known = true;
  }
  if (!known) {
    fail_field(f.file(), "scoring_func", "\"" + scoring + "\"",
               "must be sqrtsoftplus, sigmoid or softmax");
  }
  c.topk_method = f.string("topk_method", c.topk_method);
  c.routed_scaling_factor =
      f.real("routed_scaling_factor", lim::kRoutedScalingFactor, c.routed_scaling_factor);
  c.norm_topk_prob = f.boolean("norm_topk_prob", c.norm_topk_prob);
  c.swiglu_limit = f.real("swiglu_limit", lim::kSwigluLimit, c.swiglu_limit);
  c.hc_sinkhorn_iters =
      f.narrow_integer("hc_sinkhorn_iters", lim::kHcSinkhornIters, c.hc_sinkhorn_iters);
  c.hc_eps = f.real("hc_eps", lim::kEps, c.hc_eps);
  c.rms_norm_eps = f.real("rms_norm_eps", lim::kEps, c.rms_norm_eps);
  c.hidden_act = f.string("hidden_act", c.hidden_act);
}

void read_storage(const ConfigFields& f, ModelConfig& c) {
  c.expert_dtype = f.string("expert_dtype", c.expert_dtype);
  if (const json* q = f.find("quantization_config")) {
    if (!q->is_object()) {
      fail_field(f.file(), "quantization_config", value_text(*q), "must be an object");
    }
    c.quantization_config = *q;
  }
}

// One rope_parameters entry (transformers' RopeParameters); `type` is accepted as an alias of
// `rope_type` (HF BC).
ops::RopeParams read_rope_entry(const ConfigFields& r, double prf_default) {
  ops::RopeParams p;
  p.rope_type = r.string("rope_type", r.string("type", "default"));
  if (p.rope_type != "default" && p.rope_type != "yarn") {
    fail_field(r.file(), r.field(r.has("rope_type") ? "rope_type" : "type"),
               "\"" + p.rope_type + "\"",
               "must be default or yarn (the RoPE types of DeepSeek V4)");
  }
  p.rope_theta = r.real("rope_theta", lim::kRopeTheta, p.rope_theta);
  p.partial_rotary_factor = r.real("partial_rotary_factor", lim::kPartialRotaryFactor, prf_default);
  p.factor = r.real("factor", lim::kRopeFactor, p.factor);
  p.has_attention_factor = r.has("attention_factor");
  p.attention_factor = r.real("attention_factor", lim::kRopeAttentionFactor, p.attention_factor);
  // transformers: `rope_parameters_dict.get("beta_fast") or 32` (a 0 also falls back).
  const lim::RealRange beta_or_zero{0.0, lim::kRopeBeta.max, false};
  const double beta_fast = r.real("beta_fast", beta_or_zero, 0.0);
  const double beta_slow = r.real("beta_slow", beta_or_zero, 0.0);
  p.beta_fast = beta_fast != 0.0 ? beta_fast : 32.0;
  p.beta_slow = beta_slow != 0.0 ? beta_slow : 1.0;
  p.has_original_max_position_embeddings = r.has("original_max_position_embeddings");
  p.original_max_position_embeddings =
      r.integer("original_max_position_embeddings", lim::kMaxPositionEmbeddings, 0);
  p.mscale = r.real("mscale", lim::kRopeMscale, 0.0);
  p.mscale_all_dim = r.real("mscale_all_dim", lim::kRopeMscale, 0.0);
  p.truncate = r.boolean("truncate", true);
  return p;
}

// RoPE as transformers builds it. partial_rotary_factor: explicit > qk_rope_head_dim / head_dim
// (native) > 0.125. rope_parameters (or its BC alias rope_scaling; rope_parameters wins): nested
// {main, compress} as save_pretrained writes it, else a flat dict (the native rope_scaling) that
// is the compressed branches' YaRN, with compress_rope_theta; "main" is then default RoPE with
// rope_theta. Both spellings agreeing is required where both are given (qk_rope_head_dim).
void read_rope(const ConfigFields& f, ModelConfig& c) {
  const bool has_prf = f.has("partial_rotary_factor"), has_qk = f.has("qk_rope_head_dim");
  const int64_t qk = f.integer("qk_rope_head_dim", lim::kRopeHeadDim, 0);
  double prf = 64.0 / 512.0;
  if (has_prf) {
    prf = f.real("partial_rotary_factor", lim::kPartialRotaryFactor, prf);
  } else if (has_qk) {
    prf = static_cast<double>(qk) / static_cast<double>(c.head_dim);
  }
  c.qk_rope_head_dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * prf);
  if (has_prf && has_qk && qk != c.qk_rope_head_dim) {
    fail_field(f.file(), "qk_rope_head_dim", std::to_string(qk),
               "disagrees with partial_rotary_factor (head_dim * partial_rotary_factor = " +
                   std::to_string(c.qk_rope_head_dim) + ")");
  }
  const double theta = f.real("rope_theta", lim::kRopeTheta, 10000.0);
  const double compress_theta = f.real("compress_rope_theta", lim::kRopeTheta, 160000.0);
  const std::string key = f.has("rope_parameters") ? "rope_parameters" : "rope_scaling";
  const json* rp = f.object(key.c_str());
  const json empty = json::object();
  const ConfigFields rope(rp ? *rp : empty, f.file(), key + ".");
  const json* main = rope.object("main");
  const json* compress = rope.object("compress");
  c.rope_main = ops::RopeParams{};
  c.rope_main.rope_theta = theta;
  c.rope_main.partial_rotary_factor = prf;
  if (main) c.rope_main = read_rope_entry(ConfigFields(*main, f.file(), key + ".main."), prf);
  if (compress) {
    c.rope_compress = read_rope_entry(ConfigFields(*compress, f.file(), key + ".compress."), prf);
    return;
  }
  c.rope_compress = main ? ops::RopeParams{} : read_rope_entry(rope, prf);
  c.rope_compress.rope_theta = compress_theta;
  c.rope_compress.partial_rotary_factor = prf;
  if (c.rope_compress.rope_type == "yarn" && !c.rope_compress.has_attention_factor) {
    c.rope_compress.has_attention_factor = true;  // V4: no YaRN mscale on cos/sin
    c.rope_compress.attention_factor = 1.0;
  }
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& src) {
  const ConfigFields f(j, src);
  ModelConfig c;
  c.raw = j;
  c.source = src;
  c.model_type = f.string("model_type", c.model_type);
  c.torch_dtype = f.string("torch_dtype", f.string("dtype", ""));
  read_shapes(f, c);
  read_attention_schedule(f, c);
  read_hash_layers(f, c);
  read_numerics(f, c);
  read_rope(f, c);
  read_storage(f, c);
  c.validate(src);
  return c;
}

}  // namespace qf::model
