// Shared by the test_forward_* tests: a small DeepSeek V4 config covering every layer type and
// a deterministic random WeightLoader (values seeded by tensor name).
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "core/strings.hpp"
#include "model/config.hpp"
#include "model/layer_weights.hpp"
#include "model/linear_observer.hpp"

namespace qf::model::test {

// n values ~ N(0, std^2) from mt19937(seed): the random inputs of the forward tests.
inline std::vector<float> randn(size_t n, uint32_t seed, float std = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, std);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// catch_compat.hpp's `using Catch::Approx;` names the vector matcher function on Catch2 v2
// (it hides Catch::Detail::Approx), so these tests spell the class out.
#ifdef QF_CATCH_V3
using ApproxValue = Catch::Approx;
#else
using ApproxValue = Catch::Detail::Approx;
#endif

// 3 layers: sliding + hash MoE, CSA (rate 4, indexer top-3) + top-k MoE, HCA (rate 8) + top-k.
inline nlohmann::json small_config_json() {
  return {
      {"vocab_size", 64},
      {"hidden_size", 64},
      {"num_hidden_layers", 3},
      {"num_attention_heads", 4},
      {"head_dim", 32},
      {"partial_rotary_factor", 0.25},
      {"q_lora_rank", 32},
      {"o_groups", 2},
      {"o_lora_rank", 16},
      {"index_n_heads", 4},
      {"index_head_dim", 16},
      {"index_topk", 3},
      {"n_routed_experts", 8},
      {"num_experts_per_tok", 2},
      {"moe_intermediate_size", 32},
      {"hc_mult", 4},
      {"sliding_window", 16},
      {"swiglu_limit", 1.0},
      {"layer_types",
       {"sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention"}},
      {"mlp_layer_types", {"hash_moe", "moe", "moe"}},
      {"compress_rates", {{"compressed_sparse_attention", 4}, {"heavily_compressed_attention", 8}}},
      {"rope_theta", 10000.0},
      {"compress_rope_theta", 160000.0}};
}

inline ModelConfig small_config() { return ModelConfig::from_json(small_config_json(), "test"); }

// Random but well-scaled weights: linears ~ N(0, 1/in), norms ~ 1 + N(0, 0.1), hash tables with
// k distinct experts per token (never expert `unused_expert` if >= 0).
inline WeightLoader random_loader(uint32_t seed, int64_t n_experts, int unused_expert = -1) {
  return [=](const std::string& name, std::vector<int64_t> shape) {
    std::seed_seq seq(name.begin(), name.end());
    std::mt19937 base(seq);
    std::mt19937 rng(base() ^ seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(n);
    if (ends_with(name, "tid2eid")) {
      std::uniform_int_distribution<int> pick(0, static_cast<int>(n_experts) - 1);
      for (int64_t r = 0; r < shape[0]; ++r) {
        std::set<int> used;
        for (int64_t s = 0; s < shape[1]; ++s) {
          int e;
          do e = pick(rng);
          while (used.count(e) || e == unused_expert);
          used.insert(e);
          v[r * shape[1] + s] = static_cast<float>(e);
        }
      }
      return v;
    }
    float mean = 0.0f, std = 1.0f;
    if (shape.size() == 2) {
      std = 1.0f / std::sqrt(static_cast<float>(shape[1]));
      if (ends_with(name, ".ape")) std = 0.5f;
    } else if (ends_with(name, "_scale")) {
      mean = 1.0f, std = 0.1f;
    } else if (ends_with(name, "_base") || ends_with(name, "attn_sink")) {
      std = 0.5f;
    } else if (ends_with(name, "gate.bias")) {
      std = 0.1f;
    } else {  // norm weights
      mean = 1.0f, std = 0.1f;
    }
    for (float& x : v) x = mean + std * normal(rng);
    return v;
  };
}

// Records every observe() call in order, plus the AmaxRecorder statistics.
struct RecordingObserver : AmaxRecorder {
  std::vector<std::string> names;
  std::vector<std::pair<int64_t, int64_t>> shapes;
  void observe(const std::string& name, const float* x, int64_t n_rows, int64_t n_cols) override {
    names.push_back(name);
    shapes.emplace_back(n_rows, n_cols);
    AmaxRecorder::observe(name, x, n_rows, n_cols);
  }
};

}  // namespace qf::model::test
