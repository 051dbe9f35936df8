// ModelConfig: presets load and match configs/*.json, round trips keep every field, the
// transformers spelling parses, bad fields are rejected with the file and field named.
#include <cstdlib>
#include <string>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "formats/atomic_file.hpp"
#include "model/config.hpp"
#include "model/presets.hpp"

using namespace qf;
using model::AttentionKind;
using model::ModelConfig;
using nlohmann::json;

namespace {

std::string source_dir() {
  const char* dir = std::getenv("QF_SOURCE_DIR");
  return dir ? dir : ".";
}

json preset_file(const std::string& name) {
  return formats::read_json_file(source_dir() + "/configs/" + name + ".json");
}

// Parses `j` expecting failure; returns the user-facing message.
std::string parse_error(const json& j) {
  try {
    ModelConfig::from_json(j, "bad.json");
  } catch (const Error& e) {
    return e.message();
  }
  FAIL("config was accepted: " << j.dump());
  return "";
}

void check_rejected(const json& j, const std::string& needle) {
  const std::string message = parse_error(j);
  INFO("message: " << message);
  CHECK(message.find("bad.json") != std::string::npos);
  CHECK(message.find(needle) != std::string::npos);
}

}  // namespace

TEST_CASE("every preset is a copy of its configs/ file and loads", "[model_config]") {
  for (const auto& preset : model::presets()) {
    INFO("preset " << preset.name);
    const json file = preset_file(preset.name);
    CHECK(formats::parse_json_strict(preset.json_text, preset.name) == file);
    const ModelConfig c = model::preset_config(preset.name);
    CHECK(c.model_type == "deepseek_v4");
    CHECK(c.expert_dtype == "fp4");
    CHECK(c.quant_method() == "fp8");
    // The native spelling round-trips to the identical document.
    CHECK(c.to_json() == file);
    CHECK(ModelConfig::from_json(c.to_json(), "again").to_json() == file);
  }
}

TEST_CASE("v4-flash layer schedule", "[model_config]") {
  const ModelConfig c = model::preset_config("v4-flash");
  CHECK(c.num_hidden_layers == 43);
  CHECK(c.n_layers_total() == 44);
  CHECK(c.attention_kind(0) == AttentionKind::kSliding);
  CHECK(c.attention_kind(1) == AttentionKind::kSliding);
  CHECK(c.attention_kind(2) == AttentionKind::kCompressedSparse);
  CHECK(c.attention_kind(3) == AttentionKind::kHeavilyCompressed);
  CHECK(c.attention_kind(42) == AttentionKind::kCompressedSparse);
  CHECK(c.attention_kind(43) == AttentionKind::kSliding);  // mtp.0
  CHECK(c.has_indexer(2));
  CHECK_FALSE(c.has_indexer(3));
  CHECK(c.is_hash_layer(2));
  CHECK_FALSE(c.is_hash_layer(3));
  CHECK_FALSE(c.is_hash_layer(43));
  CHECK(c.layer_prefix(42) == "layers.42");
  CHECK(c.layer_prefix(43) == "mtp.0");
  CHECK(c.is_mtp_layer(43));
  CHECK(c.rope_compress.rope_type == "yarn");
  CHECK(c.rope_compress.factor == 16.0);
  CHECK(c.rope_compress.original_max_position_embeddings == 65536);
  CHECK(c.rope_main.rope_type == "default");
  CHECK(c.qk_rope_head_dim == 64);
}

TEST_CASE("v4-pro layer schedule: 31 HCA, 30 CSA, 3 hash layers", "[model_config]") {
  const ModelConfig c = model::preset_config("v4-pro");
  int n_csa = 0, n_hca = 0, n_sliding = 0, n_hash = 0;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    n_csa += c.attention_kind(l) == AttentionKind::kCompressedSparse;
    n_hca += c.attention_kind(l) == AttentionKind::kHeavilyCompressed;
    n_sliding += c.attention_kind(l) == AttentionKind::kSliding;
    n_hash += c.is_hash_layer(l);
  }
  CHECK(n_csa == 30);
  CHECK(n_hca == 31);
  CHECK(n_sliding == 0);
  CHECK(n_hash == 3);
  CHECK(c.attention_kind(61) == AttentionKind::kSliding);
  CHECK(c.o_groups == 16);
  CHECK(c.q_lora_rank == 1536);
  CHECK(c.routed_scaling_factor == 2.5);
}

TEST_CASE("tiny covers every layer type and hash routing", "[model_config]") {
  const ModelConfig c = model::preset_config("tiny");
  CHECK(c.attention_kind(0) == AttentionKind::kSliding);
  CHECK(c.attention_kind(1) == AttentionKind::kCompressedSparse);
  CHECK(c.attention_kind(2) == AttentionKind::kHeavilyCompressed);
  CHECK(c.attention_kind(3) == AttentionKind::kCompressedSparse);
  CHECK(c.is_hash_layer(0));
  CHECK(c.is_hash_layer(1));
  CHECK_FALSE(c.is_hash_layer(2));
  CHECK(c.num_nextn_predict_layers == 1);
}

TEST_CASE("unknown fields survive a round trip", "[model_config]") {
  json j = preset_file("tiny");
  j["dspark_block_size"] = 5;
  j["some_future_field"] = {{"nested", {1, 2, 3}}};
  const ModelConfig c = ModelConfig::from_json(j, "tiny+extra.json");
  CHECK(c.to_json() == j);
  ModelConfig edited = c;
  edited.num_hidden_layers = 3;
  edited.validate("edited");
  CHECK(edited.to_json()["num_hidden_layers"] == 3);
  CHECK(edited.to_json()["some_future_field"] == j["some_future_field"]);
}

TEST_CASE("transformers' save_pretrained spelling parses", "[model_config]") {
  const json fixture =
      formats::read_json_file(source_dir() + "/tests/fixtures/transformers_v4_small_saved.json");
  const json& j = fixture["config"];
  const ModelConfig c = ModelConfig::from_json(j, "fixture config");
  CHECK(c.num_hidden_layers == 4);
  CHECK(c.attention_kind(0) == AttentionKind::kHeavilyCompressed);
  CHECK(c.attention_kind(3) == AttentionKind::kCompressedSparse);
  CHECK(c.attention_kind(4) == AttentionKind::kSliding);  // MTP entry not in layer_types
  CHECK(c.num_hash_layers == 3);
  CHECK(c.qk_rope_head_dim == 8);
  CHECK_FALSE(c.has_quantization_config());
  const json out = c.to_json();
  CHECK(out["layer_types"] == j["layer_types"]);
  CHECK(out["mlp_layer_types"] == j["mlp_layer_types"]);
  CHECK_FALSE(out.contains("compress_ratios"));
  CHECK_FALSE(out.contains("num_hash_layers"));
}

TEST_CASE("missing fields take transformers' DeepseekV4Config defaults", "[model_config]") {
  const json good = preset_file("tiny");
  json j = good;
  // vocab_size was an error here and 129280 in the forward's copy before the configs were one.
  j.erase("vocab_size");
  CHECK(ModelConfig::from_json(j, "no-vocab.json").vocab_size == 129280);
  j = good;
  j.erase("num_hash_layers");
  CHECK(ModelConfig::from_json(j, "no-hash.json").num_hash_layers == 3);
  j = good;
  j.erase("compress_ratios");  // transformers' default schedule: 2 HCA, then HCA / CSA
  const ModelConfig c = ModelConfig::from_json(j, "no-ratios.json");
  CHECK(c.attention_kind(0) == AttentionKind::kHeavilyCompressed);
  CHECK(c.attention_kind(2) == AttentionKind::kHeavilyCompressed);
  CHECK(c.attention_kind(3) == AttentionKind::kCompressedSparse);
  CHECK(c.attention_kind(4) == AttentionKind::kSliding);  // mtp.0
  j = good;
  j.erase("model_type");
  CHECK(ModelConfig::from_json(j, "no-type.json").model_type == "deepseek_v4");
  const ModelConfig d = ModelConfig::from_json(json::object(), "empty.json");  // V4-Flash
  CHECK(d.num_hidden_layers == 43);
  CHECK(d.n_routed_experts == 256);
  CHECK(d.hidden_size == 4096);
  CHECK(d.qk_rope_head_dim == 64);
  CHECK(d.num_nextn_predict_layers == 1);
}

TEST_CASE("ill-typed fields are rejected naming file and field", "[model_config]") {
  const json good = preset_file("tiny");
  json j = good;
  j["hidden_size"] = "256";
  check_rejected(j, "hidden_size");
  j = good;
  j["hidden_size"] = 256.5;
  check_rejected(j, "hidden_size");
  j = good;
  j["hidden_size"] = 256.0;  // a float where an integer is expected
  check_rejected(j, "hidden_size = 256.0 must be an integer");
  j = good;
  j["norm_topk_prob"] = 1;
  check_rejected(j, "norm_topk_prob");
  j = good;
  j["compress_ratios"] = {0, 7, 128, 4, 0};
  check_rejected(j, "compress_ratios[1]");
  j = good;
  j["compress_ratios"] = {0, 4, 128};
  check_rejected(j, "compress_ratios");
  j = good;
  j["quantization_config"] = "fp8";
  check_rejected(j, "quantization_config");
  j = good;
  j["scoring_func"] = "relu";
  check_rejected(j, "scoring_func");
  j = good;
  j["rope_scaling"]["type"] = "linear";
  check_rejected(j, "rope_scaling.type");
}

TEST_CASE("inconsistent dimensions are rejected", "[model_config]") {
  const json good = preset_file("tiny");
  json j = good;
  j["model_type"] = "deepseek_v3";
  check_rejected(j, "model_type");
  j = good;
  j["num_experts_per_tok"] = 9;
  check_rejected(j, "num_experts_per_tok");
  j = good;
  j["o_groups"] = 3;  // 4 heads * 64 = 256 not divisible by 3
  check_rejected(j, "o_groups");
  j = good;
  j["num_hash_layers"] = 5;
  check_rejected(j, "num_hash_layers");
  j = good;
  j["expert_dtype"] = "fp16";
  check_rejected(j, "expert_dtype");
  j = good;
  j["moe_intermediate_size"] = 100;  // FP4 experts need multiples of 32
  check_rejected(j, "moe_intermediate_size");
  j = good;
  j["n_shared_experts"] = 2;
  check_rejected(j, "n_shared_experts");
  j = good;
  j["num_key_value_heads"] = 4;
  check_rejected(j, "num_key_value_heads");
  j = good;
  j["qk_rope_head_dim"] = 65;
  check_rejected(j, "qk_rope_head_dim");
  j = good;
  j["quantization_config"]["quant_method"] = "awq";
  check_rejected(j, "quant_method");
  j = good;
  j["quantization_config"]["weight_block_size"] = {64, 64};
  check_rejected(j, "weight_block_size");
  j = good;
  j["num_hidden_layers"] = 0;
  check_rejected(j, "num_hidden_layers");
}

TEST_CASE("unknown presets list the available ones", "[model_config]") {
  try {
    model::preset_config("huge");
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.message()).find("v4-flash") != std::string::npos);
  }
}
