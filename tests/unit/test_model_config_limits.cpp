// ModelConfig validation against config_limits.hpp (issue 18 defect 3): every reproduced bad
// value is refused at parse time, before anything is sized from it, with the file, the field,
// the value and the reason; products that size allocations are bounded; both spellings of a fact
// must agree; one config (one vocab_size) serves the tensor table and the forward.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "formats/atomic_file.hpp"
#include "model/config.hpp"
#include "model/layer_weights.hpp"
#include "model/tensor_table.hpp"

using namespace qf;
using model::ModelConfig;
using nlohmann::json;

namespace {

json tiny_json() {
  const char* dir = std::getenv("QF_SOURCE_DIR");
  return formats::read_json_file(std::string(dir ? dir : ".") + "/configs/tiny.json");
}

// The message of the refusal of `j` (fails the test if it is accepted), within a second.
std::string refusal(const json& j) {
  const auto start = std::chrono::steady_clock::now();
  std::string message;
  try {
    ModelConfig::from_json(j, "config.json");
    FAIL("accepted: " << j.dump());
  } catch (const Error& e) {
    message = e.message();
  }
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
  return message;
}

void check_refused(const json& j, const std::string& expected) {
  const std::string message = refusal(j);
  INFO("message: " << message);
  CHECK(message.find(expected) != std::string::npos);
}

json with(const std::string& key, const json& value) {
  json j = tiny_json();
  j[key] = value;
  return j;
}

}  // namespace

TEST_CASE("reproduced defects: out-of-range values are refused before any allocation",
          "[model_config]") {
  // Was OOM-killed at 24 GB building the tensor table.
  check_refused(with("n_routed_experts", 2000000000),
                "config.json: n_routed_experts = 2000000000 exceeds the limit 65536");
  // Used to overflow the layer count: "layer 0 out of range [0, -2147483645)".
  check_refused(with("num_nextn_predict_layers", 2147483647),
                "config.json: num_nextn_predict_layers = 2147483647 exceeds the limit 64");
  // Used to run Sinkhorn for minutes.
  check_refused(with("hc_sinkhorn_iters", 2147483647),
                "config.json: hc_sinkhorn_iters = 2147483647 exceeds the limit 1024");
  // 4294967300 = 2^32 + 4 used to be read as 4 (truncated to int).
  check_refused(with("compress_ratios", {0, 4, 128, 4294967300LL, 0}),
                "config.json: compress_ratios[3] = 4294967300 must be 0, 4 or 128");
  check_refused(with("swiglu_limit", -1), "config.json: swiglu_limit = -1 must be > 0");
  json j = tiny_json();
  j["rope_scaling"]["factor"] = 0;
  check_refused(j, "config.json: rope_scaling.factor = 0 must be > 0");
}

TEST_CASE("integers: no floats, no negatives, no values beyond int64", "[model_config]") {
  check_refused(with("num_hidden_layers", 4.0), "num_hidden_layers = 4.0 must be an integer");
  check_refused(with("num_hidden_layers", "4"), "num_hidden_layers = \"4\" must be an integer");
  check_refused(with("num_hidden_layers", true), "num_hidden_layers = true must be an integer");
  check_refused(with("hidden_size", -256), "hidden_size = -256 is below the minimum 1");
  check_refused(with("num_nextn_predict_layers", -1),
                "num_nextn_predict_layers = -1 must not be negative");
  check_refused(with("vocab_size", UINT64_MAX),
                "vocab_size = 18446744073709551615 exceeds the limit 4194304");
  check_refused(with("index_topk", INT64_MIN), "index_topk = -9223372036854775808 is below");
  check_refused(with("n_shared_experts", 2), "n_shared_experts = 2 must be 1");
  check_refused(with("hc_eps", 0.0), "hc_eps = 0.0 must be > 0");
  check_refused(with("rms_norm_eps", std::numeric_limits<double>::infinity()),
                "rms_norm_eps = inf must be finite");
  json j = tiny_json();
  j["compress_ratios"] = json::array();
  for (int i = 0; i < 5000; ++i) j["compress_ratios"].push_back(0);
  check_refused(j, "compress_ratios = a list of 5000 entries exceeds the limit of 1088 entries");
  j = tiny_json();
  j["rope_scaling"]["original_max_position_embeddings"] = -5;
  check_refused(j, "rope_scaling.original_max_position_embeddings = -5 is below the minimum 1");
  j = tiny_json();
  j["rope_scaling"]["beta_fast"] = -32;
  check_refused(j, "rope_scaling.beta_fast = -32 must be >= 0");
  j = tiny_json();
  j["rope_theta"] = 1.0;  // YaRN divides by log(theta)
  check_refused(j, "rope_theta = 1.0 must be > 1");
}

TEST_CASE("products that size allocations are bounded", "[model_config]") {
  json j = tiny_json();
  j["num_hidden_layers"] = 1000;
  j["n_routed_experts"] = 60000;
  j["compress_ratios"] = json::array();
  for (int i = 0; i < 1001; ++i) j["compress_ratios"].push_back(0);
  check_refused(j, "routed experts over all layers");
  j = tiny_json();
  j["vocab_size"] = 4000000;
  j["hidden_size"] = 131072;
  check_refused(j, "embed: vocab_size x hidden_size = 4000000 x 131072 = 524288000000 exceeds");
  j = tiny_json();
  j["num_attention_heads"] = 4096;
  j["head_dim"] = 16384;
  check_refused(j, "num_attention_heads x head_dim");
  j = tiny_json();  // every factor in range, the checkpoint too large
  j["num_hidden_layers"] = 1000;
  j["n_routed_experts"] = 500;
  j["hidden_size"] = 131072;
  j["moe_intermediate_size"] = 131072;
  j["compress_ratios"] = json::array();
  for (int i = 0; i < 1001; ++i) j["compress_ratios"].push_back(0);
  check_refused(j, "exceeds the limit");
}

TEST_CASE("a config edited in code is re-validated", "[model_config]") {
  ModelConfig c = ModelConfig::from_json(tiny_json(), "tiny.json");
  c.n_routed_experts = 2000000000;
  try {
    c.validate("edited");
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(e.message().find("edited: n_routed_experts = 2000000000 exceeds the limit 65536") !=
          std::string::npos);
  }
}

TEST_CASE("both spellings of a fact must agree", "[model_config]") {
  json j = tiny_json();
  j["layer_types"] = {"sliding_attention", "compressed_sparse_attention",
                      "compressed_sparse_attention", "compressed_sparse_attention"};
  check_refused(j,
                "layer_types[2] = compressed_sparse_attention disagrees with compress_ratios[2]");
  j = tiny_json();
  j["layer_types"] = {"sliding_attention", "compressed_sparse_attention",
                      "heavily_compressed_attention", "compressed_sparse_attention"};
  CHECK(ModelConfig::from_json(j, "both.json").compress_ratio(2) == 128);
  j = tiny_json();
  j["mlp_layer_types"] = {"hash_moe", "moe", "moe", "moe"};  // 1, num_hash_layers says 2
  check_refused(j, "num_hash_layers = 2 disagrees with mlp_layer_types");
  j = tiny_json();
  j.erase("num_hash_layers");
  j["mlp_layer_types"] = {"moe", "hash_moe", "moe", "moe"};
  check_refused(j, "mlp_layer_types[1] = \"hash_moe\" follows a moe layer");
  j = tiny_json();
  j["partial_rotary_factor"] = 0.5;  // 64 * 0.5 = 32, qk_rope_head_dim says 16
  check_refused(j, "qk_rope_head_dim = 16 disagrees with partial_rotary_factor");
}

TEST_CASE("one vocab_size for the tensor table and the forward", "[model_config]") {
  // Before the configs were one, a missing vocab_size was an error for the table and 129280
  // for the forward; now both read the same field of the same object.
  json j = tiny_json();
  j.erase("vocab_size");
  const ModelConfig c = ModelConfig::from_json(j, "no-vocab.json");
  CHECK(c.vocab_size == 129280);
  int64_t embed_rows = 0;
  for (const auto& t : model::checkpoint_tensors(c, model::WeightFormat::kBf16)) {
    if (t.spec.name == "embed.weight") embed_rows = t.spec.shape.at(0);
  }
  CHECK(embed_rows == 129280);
  std::vector<int64_t> asked;
  struct Asked {};  // stop at the first weight: the embedding
  try {
    model::load_global_weights(c, [&](const std::string& name, std::vector<int64_t> shape) {
      if (name == "embed_tokens.weight") asked = shape;
      throw Asked{};
      return std::vector<float>();
    });
  } catch (const Asked&) {
  }
  REQUIRE(asked.size() == 2);
  CHECK(asked[0] == 129280);
}

TEST_CASE("softmax scoring: a valid config, refused where a forward is built", "[model_config]") {
  const ModelConfig c = ModelConfig::from_json(with("scoring_func", "softmax"), "soft.json");
  CHECK(c.scoring_func == ops::ScoringFunc::kSoftmax);
  CHECK(c.to_json()["scoring_func"] == "softmax");
  try {
    c.require_reference_forward();
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(e.message().find("soft.json: scoring_func = softmax is not supported") !=
          std::string::npos);
  }
}
