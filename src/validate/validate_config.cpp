// validate: the recipe an export declares and the checks on its JSON: config.json (the source's,
// with quantization_config as docs/EXPORT_FORMAT.md states per recipe) and hf_quant_config.json
// (consistent with it). Does not look at tensors beyond the recipe's target list.
#include <set>

#include "core/check.hpp"
#include "core/strings.hpp"
#include "formats/atomic_file.hpp"
#include "validate/validate_context.hpp"

namespace qf::pipeline::validate_detail {
namespace {

using nlohmann::json;

constexpr const char* kExpertsProducerVersion = "dsv4-nvfp4-experts";

json nvfp4_group(const json& targets) {
  const json scheme = {{"dynamic", false}, {"num_bits", 4}, {"type", "float"}, {"group_size", 16}};
  return {{"input_activations", scheme}, {"weights", scheme}, {"targets", targets}};
}

// quantized_layers the targets imply: experts -> one entry per regular layer's expert
// container; full -> one per quantized module.
json expected_quantized_layers(const Context& ctx) {
  const json entry = {{"quant_algo", "NVFP4"}, {"group_size", 16}};
  json out = json::object();
  for (const auto& [name, target] : ctx.targets) {
    const std::string key = ctx.recipe == Recipe::kFull
                                ? target.module
                                : "layers." + std::to_string(target.source->layer) + ".ffn.experts";
    out[key] = entry;
  }
  return out;
}

bool read_json(const std::string& path, json* out, std::string* error) {
  try {
    *out = formats::read_json_file(path);
    return true;
  } catch (const Error& e) {
    *error = e.message();
    return false;
  }
}

// Compares one key of `have` against `want`; absent `want` (null pointer) means "must be absent".
void expect_key(CheckRecorder& check, const std::string& where, const json& have,
                const std::string& key, const json* want) {
  const bool present = have.contains(key);
  if (!want) {
    if (present) {
      check.fail(where + "." + key, "must be absent but is", have[key].dump());
    } else {
      check.pass();
    }
  } else if (!present) {
    check.fail(where + "." + key, "is missing; expected", want->dump());
  } else if (have[key] != *want) {
    check.fail(where + "." + key, "is", have[key].dump(), "but expected", want->dump());
  } else {
    check.pass();
  }
}

// quantization_config of OUT's config.json against the recipe.
void check_quantization_config(Context& ctx, const json& qc) {
  auto& check = ctx.check(kCheckConfig);
  const std::string where = "config.json quantization_config";
  json want = json::object();
  const json layers = expected_quantized_layers(ctx);
  const json kv = qc.contains("kv_cache_quant_algo") && qc["kv_cache_quant_algo"] == "FP8"
                      ? json("FP8")
                      : json(nullptr);
  if (ctx.recipe == Recipe::kExperts) {
    const json source_qc = ctx.source_config.value("quantization_config", json::object());
    if (source_qc.is_object()) want = source_qc;
    want.erase("exclude_modules");
    if (!want.contains("quant_method")) want["quant_method"] = "fp8";
    if (!want.contains("activation_scheme")) want["activation_scheme"] = "dynamic";
    if (!want.contains("weight_block_size")) want["weight_block_size"] = {128, 128};
    want["moe_quant_algo"] = "NVFP4";
    want["config_groups"] = {{"group_0", nvfp4_group({"Linear"})}};
    want["producer"] = {{"name", "modelopt"}, {"version", kExpertsProducerVersion}};
    want["ignore"] = {"*.attn.*", "*.ffn.shared_experts.*", "head", "mtp.*"};
  } else {
    want["quant_method"] = "modelopt";
    json targets = json::array();
    for (const auto& [name, entry] : layers.items()) targets.push_back(name);
    want["config_groups"] = {{"group_0", nvfp4_group(targets)}};
    // Any producer naming ModelOpt's format; the exclude list is checked by rule below.
    if (qc.contains("producer")) want["producer"] = qc["producer"];
    if (qc.contains("ignore")) want["ignore"] = qc["ignore"];
  }
  want["quant_algo"] = "MIXED_PRECISION";
  want["kv_cache_quant_algo"] = kv;
  want["group_size"] = 16;
  want["quantized_layers"] = layers;
  if (kv == "FP8")
    want["kv_cache_scheme"] = {{"dynamic", false}, {"num_bits", 8}, {"type", "float"}};

  for (const auto& [key, value] : want.items()) expect_key(check, where, qc, key, &value);
  for (const auto& [key, value] : qc.items()) {
    if (!want.contains(key)) expect_key(check, where, qc, key, nullptr);
  }
  if (ctx.recipe != Recipe::kFull) return;

  // full: producer.name "modelopt"; ignore lists every unquantized linear and no quantized one.
  if (!qc.contains("producer") || !qc["producer"].is_object() ||
      qc["producer"].value("name", "") != "modelopt") {
    check.fail(where + ".producer must be an object with name \"modelopt\"");
  }
  if (!qc.contains("ignore") || !qc["ignore"].is_array()) {
    check.fail(where + ".ignore must be an array of module wildcards");
    return;
  }
  std::vector<std::string> patterns;
  for (const auto& p : qc["ignore"]) {
    if (p.is_string()) patterns.push_back(p.get<std::string>());
  }
  const auto ignored = [&](const std::string& module) {
    for (const auto& p : patterns) {
      if (wildcard_match(p, module)) return true;
    }
    return false;
  };
  uint64_t n_wrong = 0;
  for (const auto& t : ctx.source_tensors) {
    if (!is_weight_name(t.name) || t.stored.shape.size() != 2) continue;
    const std::string module = module_of_weight(t.name);
    const bool quantized = ctx.targets.count(t.name) > 0;
    if (quantized == ignored(module)) {
      ++n_wrong;
      check.fail(where + ".ignore", quantized ? "matches quantized module" : "does not cover",
                 quantized ? "" : "unquantized linear", module);
    }
  }
  if (n_wrong == 0) check.pass();
}

void check_hf_quant_config(Context& ctx, const json& qc) {
  auto& check = ctx.check(kCheckHfQuantConfig);
  json hf;
  std::string error;
  if (!read_json(ctx.out.dir + "/hf_quant_config.json", &hf, &error)) {
    check.fail("hf_quant_config.json unreadable:", error);
    return;
  }
  if (!hf.is_object() || !hf.contains("quantization") || !hf["quantization"].is_object()) {
    check.fail("hf_quant_config.json has no \"quantization\" object");
    return;
  }
  const json& q = hf["quantization"];
  const std::string where = "hf_quant_config.json quantization";
  // Same values as config.json's quantization_config (ModelOpt's nested form of it).
  const std::pair<const char*, const char*> same[] = {
      {"quant_algo", "quant_algo"},
      {"kv_cache_quant_algo", "kv_cache_quant_algo"},
      {"group_size", "group_size"},
      {"quantized_layers", "quantized_layers"},
      {"exclude_modules", "ignore"}};
  std::set<std::string> known;
  for (const auto& [key, qc_key] : same) {
    known.insert(key);
    const json want = qc.contains(qc_key) ? qc[qc_key] : json();
    expect_key(check, where, q, key, &want);
  }
  for (const auto& [key, value] : q.items()) {
    if (!known.count(key)) expect_key(check, where, q, key, nullptr);
  }
  const json producer = qc.contains("producer") ? qc["producer"] : json();
  expect_key(check, "hf_quant_config.json", hf, "producer", &producer);
  // quantforge's own provenance block, when present, names the same recipe.
  if (hf.contains("quantforge") && hf["quantforge"].is_object() &&
      hf["quantforge"].contains("recipe")) {
    const json recipe = recipes().name(ctx.recipe);
    expect_key(check, "hf_quant_config.json quantforge", hf["quantforge"], "recipe", &recipe);
  }
  // ... and, when it names the expert weights' arithmetic, a known one other than the default
  // (the cast is written as no key at all).
  if (hf.contains("quantforge") && hf["quantforge"].is_object() &&
      hf["quantforge"].contains("expert_weights")) {
    const json& have = hf["quantforge"]["expert_weights"];
    if (!have.is_string() || !expert_weights_modes().contains(have.get<std::string>()) ||
        have == expert_weights_modes().name(ExpertWeights::kCast)) {
      check.fail("hf_quant_config.json quantforge.expert_weights is", have.dump(), "; expected",
                 expert_weights_modes().name(ExpertWeights::kRequantize), "or no key (cast)");
    } else {
      check.pass();
    }
  }
  // ... and, when it names the weight-scale method, a known one other than max (no key).
  if (hf.contains("quantforge") && hf["quantforge"].is_object() &&
      hf["quantforge"].contains("weight_scale")) {
    const json& have = hf["quantforge"]["weight_scale"];
    if (!have.is_string() || !weight_scale_methods().contains(have.get<std::string>()) ||
        have == weight_scale_methods().name(WeightScale::kMax)) {
      check.fail("hf_quant_config.json quantforge.weight_scale is", have.dump(), "; expected one",
                 "of", weight_scale_methods().names(), "other than max, or no key (max)");
    } else {
      check.pass();
    }
  }
}

}  // namespace

void detect_recipe(Context& ctx) {
  json config;
  std::string error;
  if (read_json(ctx.out.dir + "/config.json", &config, &error) && config.is_object() &&
      config.contains("quantization_config") && config["quantization_config"].is_object()) {
    const json method = config["quantization_config"].value("quant_method", json());
    if (method == "modelopt" || method == "fp8") {
      ctx.recipe = method == "modelopt" ? Recipe::kFull : Recipe::kExperts;
      ctx.recipe_known = true;
      ctx.recipe_text = recipes().name(ctx.recipe);
      return;
    }
  }
  // Undeclared: infer from the tensors so the tensor checks still run (config fails anyway).
  ctx.recipe = Recipe::kExperts;
  for (const auto& [name, file] : ctx.out.shard_of) {
    const std::string suffix = ".weight_scale_2";
    if (name.size() > suffix.size() && name.find(".ffn.experts.") == std::string::npos &&
        ends_with(name, suffix)) {
      ctx.recipe = Recipe::kFull;
    }
  }
  ctx.recipe_text = std::string(recipes().name(ctx.recipe)) + " (inferred from tensors)";
}

void detect_expert_weights(Context& ctx) {
  json hf;
  std::string error;
  if (!read_json(ctx.out.dir + "/hf_quant_config.json", &hf, &error) || !hf.is_object() ||
      !hf.contains("quantforge") || !hf["quantforge"].is_object()) {
    return;  // not quantforge's (or unreadable: check_configs says so); inferred from the tensors
  }
  const json& have = hf["quantforge"].value("expert_weights", json("cast"));
  if (have.is_string() && expert_weights_modes().contains(have.get<std::string>())) {
    ctx.expert_weights = expert_weights_modes().parse(have.get<std::string>());
    ctx.expert_weights_known = true;
  }
  const json& method = hf["quantforge"].value("weight_scale", json("max"));
  if (method.is_string() && weight_scale_methods().contains(method.get<std::string>())) {
    ctx.weight_scale = weight_scale_methods().parse(method.get<std::string>());
  }
}

void check_configs(Context& ctx) {
  auto& check = ctx.check(kCheckConfig);
  json config;
  std::string error;
  if (!read_json(ctx.out.dir + "/config.json", &config, &error) || !config.is_object()) {
    check.fail("config.json unreadable:", error.empty() ? "not an object" : error);
    ctx.check(kCheckHfQuantConfig).skip();
    return;
  }
  if (!ctx.recipe_known) {
    check.fail("config.json quantization_config.quant_method must be \"fp8\" (recipe experts)",
               "or \"modelopt\" (recipe full); got",
               config.contains("quantization_config") ? config["quantization_config"].dump()
                                                      : "no quantization_config");
  }
  // Everything but quantization_config is the source's, unchanged.
  for (const auto& [key, value] : ctx.source_config.items()) {
    if (key == "quantization_config") continue;
    expect_key(check, "config.json", config, key, &value);
  }
  for (const auto& [key, value] : config.items()) {
    if (key != "quantization_config" && !ctx.source_config.contains(key)) {
      expect_key(check, "config.json", config, key, nullptr);
    }
  }
  const json qc = config.value("quantization_config", json::object());
  if (ctx.recipe_known) check_quantization_config(ctx, qc);
  check_hf_quant_config(ctx, qc);
}

}  // namespace qf::pipeline::validate_detail
