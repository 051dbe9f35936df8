// The export's quantization configs. Values and key names follow ModelOpt's DS-V4 exporter
// (examples/deepseek/deepseek_v4/quantize_to_nvfp4.py `_build_moe_quantization`) for `experts`
// and ModelOpt's generic MIXED_PRECISION export (convert_hf_config.py, quant_utils.py) for `full`.
#include "export/quant_config.hpp"

#include "core/check.hpp"
#include "quantize/expert_weights.hpp"

#ifndef QF_VERSION
#define QF_VERSION "dev"
#endif

namespace qf::pipeline {
namespace {

using nlohmann::json;

json nvfp4_group(const json& targets) {
  const json scheme = {{"dynamic", false}, {"num_bits", 4}, {"type", "float"}, {"group_size", 16}};
  return {{"input_activations", scheme}, {"weights", scheme}, {"targets", targets}};
}

json layer_entry() { return {{"quant_algo", "NVFP4"}, {"group_size", 16}}; }

// experts: one entry per regular layer's expert container; full: one per quantized module.
json quantized_layers(const QuantizePlan& plan) {
  json out = json::object();
  if (plan.recipe == Recipe::kExperts) {
    for (int l = 0; l < plan.config.num_hidden_layers; ++l) {
      if (!plan.targets_of_layer(l).empty())
        out["layers." + std::to_string(l) + ".ffn.experts"] = layer_entry();
    }
  } else {
    for (const auto& weight : plan.targets) out[QuantizePlan::module_of(weight)] = layer_entry();
  }
  return out;
}

json exclude_modules(const QuantizePlan& plan) {
  if (plan.recipe == Recipe::kExperts) {
    return {"*.attn.*", "*.ffn.shared_experts.*", "head", "mtp.*"};
  }
  // full: the linears left in BF16 (compressors, indexer weights_proj, router), plus
  // embeddings, head and the MTP layers (kept in their source format).
  return {"*.attn.compressor.*",
          "*.attn.indexer.compressor.*",
          "*.attn.indexer.weights_proj",
          "*.ffn.gate",
          "embed",
          "head",
          "mtp.*"};
}

json kv_algo(KvCache kv) { return kv == KvCache::kFp8Cast ? json("FP8") : json(nullptr); }

json producer() { return {{"name", "modelopt"}, {"version", "dsv4-nvfp4-experts"}}; }

}  // namespace

const EnumTable<KvCache>& kv_caches() {
  static const EnumTable<KvCache> table(
      "--kv-cache", {{"none", KvCache::kNone, "no KV-cache quantization declared"},
                     {"fp8_cast", KvCache::kFp8Cast,
                      "declare an FP8 KV cache (no k/v scale tensors, as ModelOpt's "
                      "constant-amax recipe)"}});
  return table;
}

json export_config_json(const json& source_config, const QuantizePlan& plan, KvCache kv) {
  json config = source_config;
  json qc = config.value("quantization_config", json::object());
  const json layers = quantized_layers(plan);
  if (plan.recipe == Recipe::kExperts) {
    // quant_method stays "fp8": vLLM's DS-V4 config picks NVFP4 experts from moe_quant_algo.
    if (!qc.contains("quant_method")) qc["quant_method"] = "fp8";
    if (!qc.contains("activation_scheme")) qc["activation_scheme"] = "dynamic";
    if (!qc.contains("weight_block_size")) qc["weight_block_size"] = {128, 128};
    qc["moe_quant_algo"] = "NVFP4";
    qc["config_groups"] = {{"group_0", nvfp4_group({"Linear"})}};
  } else {
    qc = json::object();
    qc["quant_method"] = "modelopt";
    json targets = json::array();
    for (const auto& [name, entry] : layers.items()) targets.push_back(name);
    qc["config_groups"] = {{"group_0", nvfp4_group(targets)}};
  }
  qc["producer"] = producer();
  qc["quant_algo"] = "MIXED_PRECISION";
  qc["kv_cache_quant_algo"] = kv_algo(kv);
  qc["group_size"] = 16;
  qc["quantized_layers"] = layers;
  qc["ignore"] = exclude_modules(plan);
  qc.erase("exclude_modules");
  if (kv == KvCache::kFp8Cast) {
    qc["kv_cache_scheme"] = {{"dynamic", false}, {"num_bits", 8}, {"type", "float"}};
  }
  config["quantization_config"] = qc;
  return config;
}

json hf_quant_config_json(const QuantizePlan& plan, KvCache kv) {
  json quantforge = {{"version", QF_VERSION}, {"recipe", recipes().name(plan.recipe)}};
  // Absent means the default lossless cast (exports before the option have no such key).
  if (plan.expert_weights != ExpertWeights::kCast) {
    quantforge["expert_weights"] = expert_weights_modes().name(plan.expert_weights);
  }
  // Absent means max (ModelOpt's scales; exports before the option have no such key).
  if (plan.weight_scale != WeightScale::kMax) {
    quantforge["weight_scale"] = weight_scale_methods().name(plan.weight_scale);
  }
  return {{"producer", producer()},
          {"quantization",
           {{"quant_algo", "MIXED_PRECISION"},
            {"kv_cache_quant_algo", kv_algo(kv)},
            {"group_size", 16},
            {"quantized_layers", quantized_layers(plan)},
            {"exclude_modules", exclude_modules(plan)}}},
          {"quantforge", quantforge}};
}

}  // namespace qf::pipeline
