// checkpoint_tensors(): the per-layer-type tensor table of DeepSeek V4 (see tensor_table.hpp).
//
// Sources (where they disagree, the choice is noted at the tensor):
//  [M]  DeepSeek-V4-Flash inference/model.py (vendored copy: Linear/Compressor/Indexer/Attention/
//       Gate/MoE/Block/MTPBlock/Transformer; module tree, shapes, dtype comments)
//  [V]  vllm-project/vllm vllm/model_executor/models/deepseek_v4.py, deepseek_v4_mtp.py
//       (weights mapper, hc_* / attn_sink / gate.bias F32, e_proj/h_proj FP8, hash layers)
//  [H]  safetensors headers of the released DeepSeek-V4-Pro, as quoted in a public review
//       (compressor.wkv BF16, ape F32, indexer.weights_proj BF16, wo_a F8_E4M3, tid2eid I64,
//       experts I8 + F8_E8M0 [out,in/32], embed/head/norm BF16, mtp e_proj/h_proj F8_E4M3)
//  [T]  transformers 5.17 save_pretrained of a random DeepseekV4ForCausalLM
//       (tests/fixtures/transformers_v4_small_saved.json): names and shapes, no MTP
//  [C]  tensor counts of the DeepSeek-V4-Flash index (29 tensors per sliding layer, +4 per HCA,
//       +11 per CSA; 1575 in mtp.0), quoted by a public index validator
#include "model/tensor_table.hpp"

#include "core/check.hpp"
#include "core/int_math.hpp"

namespace qf::model {
namespace {

using formats::TensorSpec;

class TableBuilder {
 public:
  TableBuilder(const ModelConfig& config, WeightFormat format) : config_(config), format_(format) {}

  std::vector<ModelTensor> take() { return std::move(out_); }

  void set_layer(int layer, bool is_mtp) {
    layer_ = layer;
    is_mtp_ = is_mtp;
  }

  // Unquantized tensor, same dtype in both formats.
  void plain(const std::string& name, DType dtype, std::vector<int64_t> shape, int expert = -1) {
    ModelTensor t;
    t.spec = TensorSpec{name, dtype, std::move(shape)};
    if (t.spec.shape.size() == 2) {
      t.n_rows = t.spec.shape[0];
      t.n_cols = t.spec.shape[1];
    }
    push(std::move(t), expert);
  }

  // FP8 E4M3 linear `<base>.weight` [out, in] + `<base>.scale` per 128x128 tile [M].
  // Scale dtype: F8_E8M0 in fp4-expert checkpoints, F32 in fp8-expert (Base) ones [V]
  // (DeepseekV4FP8Config.is_scale_e8m0), FORMATS.md §4.
  void fp8_linear(const std::string& base, int64_t out, int64_t in, int expert = -1) {
    ModelTensor w = linear_weight(base, out, in);
    w.native_role = TensorRole::kFp8Weight;
    if (format_ == WeightFormat::kBf16) {
      push(std::move(w), expert);
      return;
    }
    w.role = TensorRole::kFp8Weight;
    w.spec.dtype = DType::kF8E4M3;
    w.scale_name = base + kScaleSuffix;
    push(std::move(w), expert);
    ModelTensor s;
    s.spec = TensorSpec{base + kScaleSuffix,
                        config_.experts_fp4() ? DType::kF8E8M0 : DType::kF32,
                        {ceil_div(out, kFp8Tile), ceil_div(in, kFp8Tile)}};
    s.role = s.native_role = TensorRole::kFp8Scale;
    push(std::move(s), expert);
  }

  // Routed expert linear: FP4 (I8 [out, in/2] + F8_E8M0 [out, in/32]) when expert_dtype is
  // "fp4" [M][H], FP8 block-scaled when "fp8" (NVIDIA-NeMo/Automodel#2034, FORMATS.md §4).
  void expert_linear(const std::string& base, int64_t out, int64_t in, int expert) {
    if (!config_.experts_fp4()) {
      fp8_linear(base, out, in, expert);
      return;
    }
    ModelTensor w = linear_weight(base, out, in);
    w.native_role = TensorRole::kFp4Weight;
    if (format_ == WeightFormat::kBf16) {
      push(std::move(w), expert);
      return;
    }
    w.role = TensorRole::kFp4Weight;
    w.spec.dtype = DType::kI8;
    w.spec.shape = {out, in / 2};
    w.scale_name = base + kScaleSuffix;
    push(std::move(w), expert);
    ModelTensor s;
    s.spec = TensorSpec{base + kScaleSuffix, DType::kF8E8M0, {out, in / kFp4Block}};
    s.role = s.native_role = TensorRole::kFp4Scale;
    push(std::move(s), expert);
  }

 private:
  ModelTensor linear_weight(const std::string& base, int64_t out, int64_t in) const {
    ModelTensor w;
    w.spec = TensorSpec{base + kWeightSuffix, DType::kBF16, {out, in}};
    w.n_rows = out;
    w.n_cols = in;
    return w;
  }

  void push(ModelTensor t, int expert) {
    t.layer = layer_;
    t.is_mtp = is_mtp_;
    t.expert = expert;
    out_.push_back(std::move(t));
  }

  const ModelConfig& config_;
  WeightFormat format_;
  int layer_ = -1;
  bool is_mtp_ = false;
  std::vector<ModelTensor> out_;
};

// Compressor of a CSA/HCA layer or of an indexer [M] Compressor.__init__: CSA (ratio 4)
// overlaps (coff = 2). wkv/wgate are BF16 in the checkpoint ("wkv and wgate in the checkpoint is
// stored in bf16" [M]; [H]), ape F32 [M][H], norm BF16 (RMSNorm "stored in bf16" [M]).
void add_compressor(TableBuilder& b, const std::string& p, int ratio, bool overlap,
                    int64_t head_dim, int64_t hidden) {
  const int64_t coff = overlap ? 2 : 1;
  b.plain(p + ".wkv.weight", DType::kBF16, {coff * head_dim, hidden});
  b.plain(p + ".wgate.weight", DType::kBF16, {coff * head_dim, hidden});
  b.plain(p + ".ape", DType::kF32, {ratio, coff * head_dim});
  b.plain(p + ".norm.weight", DType::kBF16, {head_dim});
}

void add_attention(TableBuilder& b, const ModelConfig& c, int layer, const std::string& p) {
  const int64_t hidden = c.hidden_size;
  const int64_t q_dim = int64_t{c.num_attention_heads} * c.head_dim;
  b.fp8_linear(p + ".attn.wq_a", c.q_lora_rank, hidden);
  b.plain(p + ".attn.q_norm.weight", DType::kBF16, {c.q_lora_rank});
  b.fp8_linear(p + ".attn.wq_b", q_dim, c.q_lora_rank);
  b.fp8_linear(p + ".attn.wkv", c.head_dim, hidden);
  // [M] names it kv_norm; transformers' save_pretrained writes `attn.norm` [T].
  b.plain(p + ".attn.kv_norm.weight", DType::kBF16, {c.head_dim});
  // [M] declares wo_a BF16 but notes "wo_a is FP8 in checkpoint"; [H] confirms F8_E4M3 with a
  // scale, and [C]'s 29 tensors per layer count its `.scale`. FP8 chosen.
  b.fp8_linear(p + ".attn.wo_a", int64_t{c.o_groups} * c.o_lora_rank, q_dim / c.o_groups);
  b.fp8_linear(p + ".attn.wo_b", hidden, int64_t{c.o_groups} * c.o_lora_rank);
  b.plain(p + ".attn.attn_sink", DType::kF32, {c.num_attention_heads});  // F32 [M][V][H]
  if (!c.has_compressor(layer)) return;
  const int ratio = c.compress_ratio(layer);
  const bool csa = c.has_indexer(layer);
  add_compressor(b, p + ".attn.compressor", ratio, csa, c.head_dim, hidden);
  if (!csa) return;
  // Indexer (CSA only) [M]: wq_b FP8 (default Linear dtype), weights_proj BF16 (explicit in
  // [M], BF16 in [H]), own compressor with index_head_dim.
  b.fp8_linear(p + ".attn.indexer.wq_b", int64_t{c.index_n_heads} * c.index_head_dim,
               c.q_lora_rank);
  b.plain(p + ".attn.indexer.weights_proj.weight", DType::kBF16, {c.index_n_heads, hidden});
  add_compressor(b, p + ".attn.indexer.compressor", ratio, true, c.index_head_dim, hidden);
}

void add_moe(TableBuilder& b, const ModelConfig& c, int layer, const std::string& p) {
  const int64_t hidden = c.hidden_size, inter = c.moe_intermediate_size;
  // Router: weight BF16 (torch default dtype in [M]; FORMATS.md lists BF16 vs F32 as open,
  // BF16 chosen), bias F32 [M][V]; hash layers carry tid2eid instead of bias: int32 in [M]'s
  // module, I64 on disk [H][T] -> I64.
  b.plain(p + ".ffn.gate.weight", DType::kBF16, {c.n_routed_experts, hidden});
  if (c.is_hash_layer(layer)) {
    b.plain(p + ".ffn.gate.tid2eid", DType::kI64, {c.vocab_size, c.num_experts_per_tok});
  } else {
    b.plain(p + ".ffn.gate.bias", DType::kF32, {c.n_routed_experts});
  }
  // Shared expert: default Linear dtype = FP8 [M][H] (w1 F8_E4M3 [3072, 7168] in Pro).
  b.fp8_linear(p + ".ffn.shared_experts.w1", inter, hidden);
  b.fp8_linear(p + ".ffn.shared_experts.w2", hidden, inter);
  b.fp8_linear(p + ".ffn.shared_experts.w3", inter, hidden);
  for (int e = 0; e < c.n_routed_experts; ++e) {
    const std::string ep = p + ".ffn.experts." + std::to_string(e);
    b.expert_linear(ep + ".w1", inter, hidden, e);
    b.expert_linear(ep + ".w2", hidden, inter, e);
    b.expert_linear(ep + ".w3", inter, hidden, e);
  }
}

void add_block(TableBuilder& b, const ModelConfig& c, int layer) {
  const std::string p = c.layer_prefix(layer);
  b.set_layer(layer, c.is_mtp_layer(layer));
  add_attention(b, c, layer, p);
  b.plain(p + ".attn_norm.weight", DType::kBF16, {c.hidden_size});
  b.plain(p + ".ffn_norm.weight", DType::kBF16, {c.hidden_size});
  add_moe(b, c, layer, p);
  // Hyper-connections, F32 [M] (set_dtype(float32)) [V][H]: mix = (2 + hc) * hc.
  const int64_t mix = int64_t{2 + c.hc_mult} * c.hc_mult, hc_dim = c.hc_mult * c.hidden_size;
  for (const char* site : {"attn", "ffn"}) {
    const std::string h = p + ".hc_" + site;
    b.plain(h + "_fn", DType::kF32, {mix, hc_dim});
    b.plain(h + "_base", DType::kF32, {mix});
    b.plain(h + "_scale", DType::kF32, {3});
  }
}

void add_hc_head(TableBuilder& b, const ModelConfig& c, const std::string& prefix) {
  b.plain(prefix + "hc_head_fn", DType::kF32, {c.hc_mult, c.hc_mult * c.hidden_size});
  b.plain(prefix + "hc_head_base", DType::kF32, {c.hc_mult});
  b.plain(prefix + "hc_head_scale", DType::kF32, {1});
}

}  // namespace

const EnumTable<WeightFormat>& weight_formats() {
  static const EnumTable<WeightFormat> table(
      "--format",
      {{"native", WeightFormat::kNative,
        "as released: FP8 E4M3 + 128x128 UE8M0 scales, FP4 E2M1 experts + per-32 UE8M0 scales"},
       {"bf16", WeightFormat::kBf16, "same names, quantized weights as BF16, no .scale tensors"}});
  return table;
}

const char* tensor_role_name(TensorRole role) {
  switch (role) {
    case TensorRole::kFp8Weight:
      return "fp8_weight";
    case TensorRole::kFp8Scale:
      return "fp8_scale";
    case TensorRole::kFp4Weight:
      return "fp4_weight";
    case TensorRole::kFp4Scale:
      return "fp4_scale";
    case TensorRole::kPlain:
      return "plain";
  }
  return "?";
}

std::vector<ModelTensor> checkpoint_tensors(const ModelConfig& c, WeightFormat format) {
  TableBuilder b(c, format);
  // Globals: embed/head/norm BF16 [H] ("lm_head in the checkpoint is stored in bf16" [M]),
  // hc_head_* F32 [V]. Embed first, head group after the layers, as in the released index.
  b.set_layer(-1, false);
  b.plain("embed.weight", DType::kBF16, {c.vocab_size, c.hidden_size});
  for (int l = 0; l < c.num_hidden_layers; ++l) add_block(b, c, l);
  b.set_layer(-1, false);
  b.plain("norm.weight", DType::kBF16, {c.hidden_size});
  if (!c.tie_word_embeddings) b.plain("head.weight", DType::kBF16, {c.vocab_size, c.hidden_size});
  add_hc_head(b, c, "");
  // MTP blocks [M] MTPBlock: a full Block (layer id n_layers + m, compress_ratios[n + m]) plus
  // e_proj/h_proj (FP8 [H][V]), enorm/hnorm/norm and its own hc_head_*; embed/head are shared
  // with the main model and not stored again ([C]: 1575 tensors in mtp.0 for Flash).
  for (int m = 0; m < c.num_nextn_predict_layers; ++m) {
    const int layer = c.num_hidden_layers + m;
    add_block(b, c, layer);
    const std::string p = c.layer_prefix(layer) + ".";
    b.fp8_linear(p + "e_proj", c.hidden_size, c.hidden_size);
    b.fp8_linear(p + "h_proj", c.hidden_size, c.hidden_size);
    b.plain(p + "enorm.weight", DType::kBF16, {c.hidden_size});
    b.plain(p + "hnorm.weight", DType::kBF16, {c.hidden_size});
    b.plain(p + "norm.weight", DType::kBF16, {c.hidden_size});
    add_hc_head(b, c, p);
  }
  return b.take();
}

WeightFormat config_weight_format(const ModelConfig& config) {
  return config.has_quantization_config() ? WeightFormat::kNative : WeightFormat::kBf16;
}

nlohmann::json config_json_for_format(const ModelConfig& config, WeightFormat format) {
  nlohmann::json out = config.to_json();
  if (format == WeightFormat::kBf16) out.erase("quantization_config");
  return out;
}

uint64_t total_bytes(const std::vector<ModelTensor>& tensors) {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.spec.n_bytes();
  return n;
}

uint64_t total_elems(const std::vector<ModelTensor>& tensors) {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.spec.n_elems();
  return n;
}

uint64_t total_params(const std::vector<ModelTensor>& tensors) {
  uint64_t n = 0;
  for (const auto& t : tensors) {
    if (t.role == TensorRole::kFp8Scale || t.role == TensorRole::kFp4Scale) continue;
    n += t.role == TensorRole::kFp4Weight ? 2 * t.spec.n_elems() : t.spec.n_elems();
  }
  return n;
}

uint64_t routed_expert_params(const std::vector<ModelTensor>& tensors) {
  uint64_t n = 0;
  for (const auto& t : tensors) {
    if (t.expert < 0 || t.is_mtp) continue;
    if (t.role == TensorRole::kFp8Scale || t.role == TensorRole::kFp4Scale) continue;
    n += static_cast<uint64_t>(t.n_rows) * static_cast<uint64_t>(t.n_cols);
  }
  return n;
}

std::map<DType, DTypeTotal> totals_by_dtype(const std::vector<ModelTensor>& tensors) {
  std::map<DType, DTypeTotal> totals;
  for (const auto& t : tensors) {
    DTypeTotal& total = totals[t.spec.dtype];
    ++total.n_tensors;
    total.n_bytes += t.spec.n_bytes();
  }
  return totals;
}

}  // namespace qf::model
