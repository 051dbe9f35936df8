// Whole-layer and whole-model invariants of the reference forward on a small random model with
// every layer type: determinism, batch independence, causality, observer coverage, expert
// token counts, config parsing and tensor names against the transformers save_pretrained list.
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "core/strings.hpp"
#include "forward_test_util.hpp"
#include "model/forward_decoder_layer.hpp"
#include "model/model_forward.hpp"

using namespace qf::model;
using namespace qf::model::test;

namespace {

std::vector<int64_t> tokens(int64_t n, uint32_t seed, int64_t vocab) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> d(0, vocab - 1);
  std::vector<int64_t> v(n);
  for (auto& t : v) t = d(rng);
  return v;
}

// Runs layers [0, n_layers) from the embedding; returns the hidden streams.
std::vector<float> run_layers(const ModelConfig& c, const std::vector<LayerWeights>& layers,
                              const GlobalWeights& g, const std::vector<int64_t>& ids, int n_seqs,
                              int seq_len, LinearInputObserver* obs) {
  std::vector<float> hidden = embed_tokens(c, g, ids);
  for (const LayerWeights& w : layers) {
    decoder_layer_forward(c, w.layer, w, ids, n_seqs, seq_len, hidden, obs);
  }
  return hidden;
}

// tests/fixtures: from $QF_SOURCE_DIR (set by ctest), else next to this source file.
std::string fixture_dir() {
  if (const char* root = std::getenv("QF_SOURCE_DIR")) return std::string(root) + "/tests/fixtures";
  const std::string here = __FILE__;
  return here.substr(0, here.rfind("/unit/")) + "/fixtures";
}

struct Model {
  ModelConfig config = small_config();
  GlobalWeights global;
  std::vector<LayerWeights> layers;
  explicit Model(int unused_expert = -1) {
    const WeightLoader loader = random_loader(42, config.n_routed_experts, unused_expert);
    global = load_global_weights(config, loader);
    for (int l = 0; l < config.num_hidden_layers; ++l) {
      layers.push_back(load_layer_weights(config, l, loader));
    }
  }
};

}  // namespace

TEST_CASE("small config parses every layer type", "[forward]") {
  const ModelConfig c = small_config();
  CHECK(c.attention_kind(0) == AttentionKind::kSliding);
  CHECK(c.attention_kind(1) == AttentionKind::kCompressedSparse);
  CHECK(c.attention_kind(2) == AttentionKind::kHeavilyCompressed);
  CHECK(c.compress_ratio(1) == 4);
  CHECK(c.compress_ratio(2) == 8);
  CHECK(c.qk_rope_head_dim == 8);
  CHECK(c.rope_compress.rope_theta == 160000.0);
  CHECK(c.rope_main.rope_theta == 10000.0);
  CHECK(&c.rope_for_layer(0) == &c.rope_main);
  CHECK(&c.rope_for_layer(2) == &c.rope_compress);
  CHECK(c.moe_kind(0) == MoeKind::kHash);
  CHECK(c.moe_kind(1) == MoeKind::kTopK);
}

TEST_CASE("legacy native keys fold in as transformers does", "[forward]") {
  nlohmann::json j = small_config_json();
  j.erase("layer_types");
  j.erase("mlp_layer_types");
  j.erase("partial_rotary_factor");
  j.erase("compress_rates");  // compress_ratios implies 4 / 128
  j["compress_ratios"] = {0, 4, 128};
  j["num_hash_layers"] = 1;
  j["qk_rope_head_dim"] = 16;
  j["rope_scaling"] = {
      {"type", "yarn"}, {"factor", 16}, {"original_max_position_embeddings", 65536}};
  const ModelConfig c = ModelConfig::from_json(j, "legacy");
  CHECK(c.attention_kind(2) == AttentionKind::kHeavilyCompressed);
  CHECK(c.compress_ratio(2) == 128);
  CHECK(c.moe_kind(0) == MoeKind::kHash);
  CHECK(c.moe_kind(1) == MoeKind::kTopK);
  CHECK(c.qk_rope_head_dim == 16);
  CHECK(c.rope_main.rope_type == "default");
  CHECK(c.rope_compress.rope_type == "yarn");
  CHECK(c.rope_compress.attention_factor == 1.0);  // forced by DeepseekV4Config
  CHECK(c.rope_compress.rope_theta == 160000.0);
  // compress_ratios spells ratio 128 for HCA: compress_rates saying otherwise is a contradiction.
  j["compress_rates"] = {{"heavily_compressed_attention", 8}};
  try {
    ModelConfig::from_json(j, "legacy");
    FAIL("compress_rates contradicting compress_ratios was accepted");
  } catch (const qf::Error& e) {
    CHECK(e.message().find("disagrees with compress_ratios") != std::string::npos);
  }
}

TEST_CASE("weight names match the transformers save_pretrained fixture", "[forward]") {
  const std::string path = fixture_dir() + "/transformers_v4_small_saved.json";
  std::ifstream in(path);
  REQUIRE(in.good());
  const nlohmann::json fixture = nlohmann::json::parse(in);
  const ModelConfig c = ModelConfig::from_json(fixture.at("config"), path);
  std::set<std::string> expected;
  for (const auto& [name, info] : fixture.at("tensors").items()) {
    expected.insert(qf::strip_prefix(name, "model."));
  }
  std::set<std::string> asked;
  for (const std::string& n : global_weight_names()) asked.insert(n);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    for (const std::string& n : layer_weight_names(c, l)) asked.insert(n);
  }
  CHECK(asked == expected);
  // Shapes too: a loader that serves the fixture's shapes must satisfy every expected shape.
  const WeightLoader shape_check = [&](const std::string& name, std::vector<int64_t> shape) {
    const std::string key = name == "head.weight" ? name : "model." + name;
    const auto want = fixture.at("tensors").at(key).at("shape").get<std::vector<int64_t>>();
    CHECK(want == shape);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return std::vector<float>(n, 0.0f);
  };
  load_global_weights(c, shape_check);
  for (int l = 0; l < c.num_hidden_layers; ++l) load_layer_weights(c, l, shape_check);
}

TEST_CASE("the native and the transformers spelling give the same config", "[forward]") {
  std::ifstream in(fixture_dir() + "/transformers_v4_small_saved.json");
  REQUIRE(in.good());
  const nlohmann::json hf = nlohmann::json::parse(in).at("config");
  nlohmann::json native = hf;
  for (const char* key : {"layer_types", "mlp_layer_types", "compress_rates",
                          "partial_rotary_factor", "rope_parameters"}) {
    native.erase(key);
  }
  native["compress_ratios"] = {128, 128, 128, 4, 0};
  native["num_hash_layers"] = 3;
  const ModelConfig a = ModelConfig::from_json(hf, "hf");
  const ModelConfig b = ModelConfig::from_json(native, "native");
  CHECK(a.attention_kinds == b.attention_kinds);
  CHECK(a.num_hash_layers == b.num_hash_layers);
  CHECK(a.qk_rope_head_dim == b.qk_rope_head_dim);
  CHECK(a.rope_main.rope_theta == b.rope_main.rope_theta);
  CHECK(a.rope_compress.rope_theta == b.rope_compress.rope_theta);
  CHECK(a.rope_compress.partial_rotary_factor == b.rope_compress.partial_rotary_factor);
  CHECK(a.compress_rate_hca == b.compress_rate_hca);
  CHECK(a.index_topk == b.index_topk);
  CHECK(a.hidden_size == b.hidden_size);
  CHECK(a.vocab_size == b.vocab_size);
}

TEST_CASE("layers are deterministic, batch-independent and causal", "[forward]") {
  const Model m;
  const ModelConfig& c = m.config;
  const int L = 40;  // > sliding window 16, 10 CSA entries (> top-k 3), 5 HCA entries
  const auto a = tokens(L, 1, c.vocab_size), b = tokens(L, 2, c.vocab_size);
  const int64_t per_tok = c.hc_mult * c.hidden_size;

  std::vector<int64_t> ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  const auto out_ab = run_layers(c, m.layers, m.global, ab, 2, L, nullptr);
  const auto out_ab2 = run_layers(c, m.layers, m.global, ab, 2, L, nullptr);
  CHECK(out_ab == out_ab2);

  const auto out_a = run_layers(c, m.layers, m.global, a, 1, L, nullptr);
  CHECK(std::vector<float>(out_ab.begin(), out_ab.begin() + L * per_tok) == out_a);

  std::vector<int64_t> aa = a;
  aa.insert(aa.end(), a.begin(), a.end());
  const auto out_aa = run_layers(c, m.layers, m.global, aa, 2, L, nullptr);
  CHECK(std::vector<float>(out_aa.begin(), out_aa.begin() + L * per_tok) ==
        std::vector<float>(out_aa.begin() + L * per_tok, out_aa.end()));

  // Changing the last token leaves every earlier position unchanged.
  std::vector<int64_t> a2 = a;
  a2[L - 1] = (a2[L - 1] + 1) % c.vocab_size;
  const auto out_a2 = run_layers(c, m.layers, m.global, a2, 1, L, nullptr);
  CHECK(std::vector<float>(out_a.begin(), out_a.begin() + (L - 1) * per_tok) ==
        std::vector<float>(out_a2.begin(), out_a2.begin() + (L - 1) * per_tok));
  CHECK(std::vector<float>(out_a.begin() + (L - 1) * per_tok, out_a.end()) !=
        std::vector<float>(out_a2.begin() + (L - 1) * per_tok, out_a2.end()));
  for (float v : out_ab) REQUIRE(std::isfinite(v));
}

TEST_CASE("the observer sees every linear of every layer", "[forward]") {
  const Model m;
  const ModelConfig& c = m.config;
  const int L = 40, n_seqs = 2;
  const auto ids = tokens(L * n_seqs, 3, c.vocab_size);
  RecordingObserver obs;
  run_layers(c, m.layers, m.global, ids, n_seqs, L, &obs);
  const std::vector<std::string> attn = {"wq_a", "wq_b", "wkv", "wo_a", "wo_b"};
  const std::vector<std::string> comp = {"compressor.wkv", "compressor.wgate"};
  const std::vector<std::string> idx = {"indexer.compressor.wkv", "indexer.compressor.wgate",
                                        "indexer.wq_b", "indexer.weights_proj"};
  std::set<std::string> expected;
  for (int l = 0; l < 3; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    for (const auto& n : attn) expected.insert(p + "attn." + n);
    if (l >= 1)
      for (const auto& n : comp) expected.insert(p + "attn." + n);
    if (l == 1)
      for (const auto& n : idx) expected.insert(p + "attn." + n);
    expected.insert(p + "ffn.gate");
    for (const char* n : {"w1", "w2", "w3"}) expected.insert(p + "ffn.shared_experts." + n);
    int64_t routed = 0;
    for (int e = 0; e < c.n_routed_experts; ++e) {
      const int64_t n_tok = obs.expert_tokens(l, e);
      routed += n_tok;
      const std::string ep = p + "ffn.experts." + std::to_string(e) + ".";
      if (n_tok > 0) {
        for (const char* n : {"w1", "w2", "w3"}) expected.insert(ep + n);
      } else {
        CHECK(obs.amax(ep + "w1") == 0.0f);
      }
    }
    CHECK(routed == L * n_seqs * c.num_experts_per_tok);
  }
  const std::set<std::string> seen(obs.names.begin(), obs.names.end());
  CHECK(seen == expected);
  for (size_t i = 0; i < obs.names.size(); ++i) {
    CHECK(obs.amax(obs.names[i]) > 0.0f);
    if (qf::ends_with(obs.names[i], "attn.wo_a")) {
      CHECK(obs.shapes[i].first == L * n_seqs * c.o_groups);
      CHECK(obs.shapes[i].second == c.num_attention_heads * c.head_dim / c.o_groups);
    }
  }
}

TEST_CASE("an expert with no routed token is never observed", "[forward]") {
  const Model m(/*unused_expert=*/5);  // hash layer 0 never routes to expert 5
  const ModelConfig& c = m.config;
  const auto ids = tokens(32, 4, c.vocab_size);
  RecordingObserver obs;
  std::vector<float> hidden = embed_tokens(c, m.global, ids);
  decoder_layer_forward(c, 0, m.layers[0], ids, 1, 32, hidden, &obs);
  CHECK(obs.expert_tokens(0, 5) == 0);
  for (const std::string& n : obs.names) CHECK(n.find("experts.5.") == std::string::npos);
  CHECK(obs.amax("layers.0.ffn.experts.5.w1") == 0.0f);
}

TEST_CASE("whole model gives finite logits of the right shape", "[forward]") {
  const Model m;
  const ModelConfig& c = m.config;
  const auto ids = tokens(2 * 24, 5, c.vocab_size);
  AmaxRecorder obs;
  const ModelOutput out = model_forward(
      c, m.global, [&](int l) { return m.layers.at(l); }, ids, 2, 24, &obs);
  REQUIRE(out.hidden.size() == size_t(48 * c.hidden_size));
  REQUIRE(out.logits.size() == size_t(48 * c.vocab_size));
  for (float v : out.logits) REQUIRE(std::isfinite(v));
  CHECK(obs.amax("head") > 0.0f);
  CHECK_THROWS_AS(model_forward(
                      c, m.global, [&](int l) { return m.layers.at(l); }, ids, 3, 24, nullptr),
                  qf::Error);
}
