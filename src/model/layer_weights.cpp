// Loads the FP32 weights of one layer / the model ends through a WeightLoader, checking shapes.
//
// Tensor names asked of the loader (save_pretrained name minus `model.`) and the transformers
// 5.17 parameter they hold; L = layer, E = expert, A = layers.L.attn, F = layers.L.ffn:
// | loader name                         | transformers (model.layers.L. omitted)      |
// |-------------------------------------|---------------------------------------------|
// | embed_tokens.weight (native: embed.) | model.embed_tokens                          |
// | norm.weight                         | model.norm                                  |
// | hc_head.hc_fn/hc_base/hc_scale      | model.hc_head (native: hc_head_fn/...)      |
// | head.weight (saved without model.)  | lm_head                                     |
// | layers.L.attn_norm/ffn_norm.weight  | input_layernorm / post_attention_layernorm  |
// | layers.L.hc_attn_fn/_base/_scale    | attn_hc.fn/base/scale (hc_ffn_*: ffn_hc.*)  |
// | A.wq_a / A.q_norm / A.wq_b .weight  | self_attn.q_a_proj / q_a_norm / q_b_proj    |
// | A.wkv.weight / A.norm.weight        | self_attn.kv_proj / kv_norm                 |
// | A.wo_a / A.wo_b .weight             | self_attn.o_a_proj / o_b_proj               |
// | A.attn_sink                         | self_attn.sinks                             |
// | A.compressor.wkv/wgate/norm, .ape   | compressor.kv_proj/gate_proj/kv_norm,       |
// |                                     |   compressor.position_bias                  |
// | A.indexer.compressor.* (same keys)  | compressor.indexer.kv_proj/... /position_bias|
// | A.indexer.wq_b / weights_proj       | compressor.indexer.q_b_proj /               |
// |                                     |   compressor.indexer.scorer.weights_proj    |
// | F.gate.weight / .bias / .tid2eid    | mlp.gate.weight / e_score_correction_bias / |
// |                                     |   tid2eid                                   |
// | F.experts.E.w1 / w3 / w2 .weight    | mlp.experts.gate_up_proj[E][:I] / [I:],     |
// |                                     |   mlp.experts.down_proj[E]                  |
// | F.shared_experts.w1 / w3 / w2       | mlp.shared_experts.gate/up/down_proj        |
#include "model/layer_weights.hpp"

#include <cmath>

#include "core/check.hpp"

namespace qf::model {
namespace {

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// The loader plus a names-only mode (layer_weight_names): then empty values are accepted.
struct Source {
  const WeightLoader& loader;
  bool names_only = false;
  bool lazy_experts = false;
};

std::vector<float> load(const Source& src, const std::string& name, std::vector<int64_t> shape) {
  std::vector<float> v = src.loader(name, shape);
  QF_CHECK(static_cast<int64_t>(v.size()) == product(shape) || (src.names_only && v.empty()),
           "weight", name, "has", v.size(), "values, expected", product(shape));
  return v;
}

Tensor2D load_2d(const Source& loader, const std::string& name, int64_t n_rows, int64_t n_cols) {
  Tensor2D t;
  t.n_rows = n_rows;
  t.n_cols = n_cols;
  t.data = load(loader, name, {n_rows, n_cols});
  return t;
}

CompressorWeights load_compressor(const Source& loader, const std::string& prefix, int64_t width,
                                  int64_t rate, int64_t head_dim, int64_t hidden) {
  CompressorWeights c;
  c.wkv = load_2d(loader, prefix + ".wkv.weight", width, hidden);
  c.wgate = load_2d(loader, prefix + ".wgate.weight", width, hidden);
  c.ape = load_2d(loader, prefix + ".ape", rate, width);
  c.norm = load(loader, prefix + ".norm.weight", {head_dim});
  return c;
}

HyperConnectionWeights load_hc(const Source& loader, const std::string& prefix,
                               const ModelConfig& c) {
  const int64_t mix = (2 + c.hc_mult) * c.hc_mult;
  HyperConnectionWeights hc;
  hc.fn = load_2d(loader, prefix + "_fn", mix, c.hc_mult * c.hidden_size);
  hc.base = load(loader, prefix + "_base", {mix});
  hc.scale = load(loader, prefix + "_scale", {3});
  return hc;
}

ExpertWeights load_expert(const Source& loader, const std::string& prefix, int64_t hidden,
                          int64_t intermediate) {
  ExpertWeights e;
  e.w1 = load_2d(loader, prefix + ".w1.weight", intermediate, hidden);
  e.w2 = load_2d(loader, prefix + ".w2.weight", hidden, intermediate);
  e.w3 = load_2d(loader, prefix + ".w3.weight", intermediate, hidden);
  return e;
}

ExpertWeights load_expert(const Source& loader, const std::string& prefix, const ModelConfig& c) {
  return load_expert(loader, prefix, c.hidden_size, c.moe_intermediate_size);
}

}  // namespace

LazyExperts::LazyExperts(WeightLoader loader, std::string prefix, int64_t n_experts, int64_t hidden,
                         int64_t intermediate)
    : loader_(std::move(loader)),
      prefix_(std::move(prefix)),
      n_experts_(n_experts),
      hidden_(hidden),
      intermediate_(intermediate) {}

const ExpertWeights& LazyExperts::get(int64_t e) {
  QF_CHECK(e >= 0 && e < n_experts_, prefix_ + ": expert", e, "out of range (", n_experts_,
           "experts)");
  if (e != held_) {
    weights_ = ExpertWeights();  // free the held expert before decoding the next
    held_ = -1;
    weights_ = load_expert(Source{loader_}, prefix_ + std::to_string(e), hidden_, intermediate_);
    held_ = e;
    ++n_loads_;
  }
  return weights_;
}

const ExpertWeights& MoeWeights::expert(int64_t e) const {
  if (lazy) return lazy->get(e);
  return experts.at(static_cast<size_t>(e));
}

static LayerWeights load_layer(const ModelConfig& c, int layer, const Source& loader) {
  QF_CHECK(layer >= 0 && layer < c.num_hidden_layers, "layer", layer, "out of range");
  const std::string p = "layers." + std::to_string(layer) + ".";
  const int64_t d = c.hidden_size;
  LayerWeights w;
  w.layer = layer;
  w.attn_norm = load(loader, p + "attn_norm.weight", {d});
  w.ffn_norm = load(loader, p + "ffn_norm.weight", {d});
  w.hc_attn = load_hc(loader, p + "hc_attn", c);
  w.hc_ffn = load_hc(loader, p + "hc_ffn", c);

  AttentionWeights& a = w.attn;
  const int64_t hd = c.head_dim, nh = c.num_attention_heads;
  a.wq_a = load_2d(loader, p + "attn.wq_a.weight", c.q_lora_rank, d);
  a.q_norm = load(loader, p + "attn.q_norm.weight", {c.q_lora_rank});
  a.wq_b = load_2d(loader, p + "attn.wq_b.weight", nh * hd, c.q_lora_rank);
  a.wkv = load_2d(loader, p + "attn.wkv.weight", hd, d);
  a.kv_norm = load(loader, p + "attn.norm.weight", {hd});
  a.wo_a =
      load_2d(loader, p + "attn.wo_a.weight", c.o_groups * c.o_lora_rank, nh * hd / c.o_groups);
  a.wo_b = load_2d(loader, p + "attn.wo_b.weight", d, c.o_groups * c.o_lora_rank);
  a.sinks = load(loader, p + "attn.attn_sink", {nh});
  const AttentionKind kind = c.attention_kind(layer);
  const int64_t rate = c.compress_ratio(layer);
  if (kind == AttentionKind::kHeavilyCompressed) {
    a.has_compressor = true;
    a.compressor = load_compressor(loader, p + "attn.compressor", hd, rate, hd, d);
  } else if (kind == AttentionKind::kCompressedSparse) {
    a.has_compressor = a.has_indexer = true;
    a.compressor = load_compressor(loader, p + "attn.compressor", 2 * hd, rate, hd, d);
    const int64_t ihd = c.index_head_dim;
    a.indexer.compressor =
        load_compressor(loader, p + "attn.indexer.compressor", 2 * ihd, rate, ihd, d);
    a.indexer.wq_b =
        load_2d(loader, p + "attn.indexer.wq_b.weight", c.index_n_heads * ihd, c.q_lora_rank);
    a.indexer.weights_proj =
        load_2d(loader, p + "attn.indexer.weights_proj.weight", c.index_n_heads, d);
  }

  MoeWeights& m = w.ffn;
  const int64_t n_exp = c.n_routed_experts;
  m.gate = load_2d(loader, p + "ffn.gate.weight", n_exp, d);
  if (c.is_hash_layer(layer)) {
    const std::vector<float> t =
        load(loader, p + "ffn.gate.tid2eid", {c.vocab_size, c.num_experts_per_tok});
    m.tid2eid.resize(t.size());
    for (size_t i = 0; i < t.size(); ++i) {
      QF_CHECK(t[i] >= 0 && t[i] < static_cast<float>(n_exp) && std::floor(t[i]) == t[i],
               p + "ffn.gate.tid2eid", "entry", i, "=", t[i], "is not an expert id");
      m.tid2eid[i] = static_cast<int32_t>(t[i]);
    }
  } else {
    m.gate_bias = load(loader, p + "ffn.gate.bias", {n_exp});
  }
  if (loader.lazy_experts) {
    m.lazy = std::make_shared<LazyExperts>(loader.loader, p + "ffn.experts.", n_exp, c.hidden_size,
                                           c.moe_intermediate_size);
  } else {
    m.experts.reserve(n_exp);
    for (int64_t e = 0; e < n_exp; ++e) {
      m.experts.push_back(load_expert(loader, p + "ffn.experts." + std::to_string(e), c));
    }
  }
  m.shared = load_expert(loader, p + "ffn.shared_experts", c);
  return w;
}

static GlobalWeights load_global(const ModelConfig& c, const Source& loader) {
  GlobalWeights g;
  const int64_t d = c.hidden_size;
  g.embed = load_2d(loader, "embed_tokens.weight", c.vocab_size, d);
  g.norm = load(loader, "norm.weight", {d});
  g.hc_head_fn = load_2d(loader, "hc_head.hc_fn", c.hc_mult, c.hc_mult * d);
  g.hc_head_base = load(loader, "hc_head.hc_base", {c.hc_mult});
  g.hc_head_scale = load(loader, "hc_head.hc_scale", {1});
  g.head = load_2d(loader, "head.weight", c.vocab_size, d);
  return g;
}

LayerWeights load_layer_weights(const ModelConfig& config, int layer, const WeightLoader& loader,
                                bool lazy_experts) {
  return load_layer(config, layer, Source{loader, false, lazy_experts});
}

GlobalWeights load_global_weights(const ModelConfig& config, const WeightLoader& loader) {
  return load_global(config, Source{loader});
}

// A loader that records the names asked for and returns no values.
static WeightLoader recording_loader(std::vector<std::string>* names) {
  return [names](const std::string& name, std::vector<int64_t>) {
    names->push_back(name);
    return std::vector<float>();
  };
}

std::vector<std::string> layer_weight_names(const ModelConfig& config, int layer) {
  std::vector<std::string> names;
  load_layer(config, layer, Source{recording_loader(&names), true});
  return names;
}

std::vector<std::string> global_weight_names() {
  ModelConfig tiny;
  tiny.vocab_size = tiny.hidden_size = tiny.hc_mult = 1;
  std::vector<std::string> names;
  load_global(tiny, Source{recording_loader(&names), true});
  return names;
}

}  // namespace qf::model
