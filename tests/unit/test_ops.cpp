// Unit checks of the reference forward's ops (src/ops) and the router around them against
// hand-computed or independently computed (double precision, naive loop) values: RMSNorm,
// RoPE/YaRN, Sinkhorn, router, SwiGLU clamp, sink attention, compressor pooling and indexer top-k.
#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "catch_compat.hpp"
#include "forward_test_util.hpp"
#include "model/forward_moe.hpp"
#include "ops/compress_pool.hpp"
#include "ops/hyper_connection_mix.hpp"
#include "ops/moe_math.hpp"
#include "ops/rms_norm.hpp"
#include "ops/rope.hpp"
#include "ops/sink_attention.hpp"

using namespace qf::ops;
using namespace qf::model;  // route_tokens: the router around ops::router_score
using qf::model::test::ApproxValue;

using qf::model::test::randn;

TEST_CASE("rms_norm matches the hand formula", "[forward]") {
  std::vector<float> x = {1, 2, 3, 4}, w = {1, 1, 2, 2};
  rms_norm_rows(x.data(), 1, 4, w.data(), 1e-6f);
  const double inv = 1.0 / std::sqrt(30.0 / 4.0 + 1e-6);
  CHECK(x[0] == ApproxValue(1 * inv).epsilon(1e-6));
  CHECK(x[1] == ApproxValue(2 * inv).epsilon(1e-6));
  CHECK(x[2] == ApproxValue(2 * 3 * inv).epsilon(1e-6));
  CHECK(x[3] == ApproxValue(2 * 4 * inv).epsilon(1e-6));
  std::vector<float> y = {3, 4};
  rms_norm_rows(y.data(), 1, 2, nullptr, 0.0f);  // unweighted: rms = sqrt(12.5)
  CHECK(y[0] == ApproxValue(3 / std::sqrt(12.5)));
  CHECK(y[1] == ApproxValue(4 / std::sqrt(12.5)));
}

TEST_CASE("rope rotates interleaved pairs of the trailing dims", "[forward]") {
  RopeParams p;
  p.rope_theta = 10000.0;
  p.partial_rotary_factor = 0.5;
  const RopeTable t = make_rope_table(p, 8, 4096);  // rope dim 4: inv_freq = {1, 1/100}
  REQUIRE(t.rope_dim == 4);
  CHECK(t.inv_freq[0] == 1.0f);
  CHECK(t.inv_freq[1] == ApproxValue(0.01f));
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<float> orig = x;
  apply_rope_trailing_n(x.data(), 1, 8, t, 3, false);
  for (int i = 0; i < 4; ++i) CHECK(x[i] == orig[i]);  // the nope dims are untouched
  const double a0 = 3.0, a1 = 0.03;
  CHECK(x[4] == ApproxValue(5 * std::cos(a0) - 6 * std::sin(a0)));
  CHECK(x[5] == ApproxValue(6 * std::cos(a0) + 5 * std::sin(a0)));
  CHECK(x[6] == ApproxValue(7 * std::cos(a1) - 8 * std::sin(a1)));
  CHECK(x[7] == ApproxValue(8 * std::cos(a1) + 7 * std::sin(a1)));
  apply_rope_trailing_n(x.data(), 1, 8, t, 3, true);  // the inverse rotation undoes it
  for (int i = 0; i < 8; ++i) CHECK(x[i] == ApproxValue(orig[i]).margin(1e-5));
}

TEST_CASE("yarn inverse frequencies follow transformers' ramp", "[forward]") {
  RopeParams p;
  p.rope_type = "yarn";
  p.rope_theta = 160000.0;
  p.partial_rotary_factor = 64.0 / 512.0;
  p.factor = 16.0;
  p.has_original_max_position_embeddings = true;
  p.original_max_position_embeddings = 65536;
  const int dim = 64;
  const RopeTable t = make_rope_table(p, 512, 1048576);
  REQUIRE(t.rope_dim == dim);
  CHECK(t.attention_scaling ==
        ApproxValue(0.1 * std::log(16.0) + 1.0));  // no attention_factor given
  auto corr = [&](double rot) {
    return dim * std::log(65536.0 / (rot * 2 * M_PI)) / (2 * std::log(160000.0));
  };
  const double low = std::max(0.0, std::floor(corr(32))), high = std::min(63.0, std::ceil(corr(1)));
  for (int i = 0; i < dim / 2; ++i) {
    const double base = std::pow(160000.0, 2.0 * i / dim);
    const double ramp = std::min(1.0, std::max(0.0, (i - low) / (high - low)));
    const double expected = (1.0 / (16.0 * base)) * ramp + (1.0 / base) * (1.0 - ramp);
    CHECK(t.inv_freq[i] == ApproxValue(expected).epsilon(1e-5));
  }
  p.has_attention_factor = true;  // V4 forces attention_factor = 1
  p.attention_factor = 1.0;
  CHECK(make_rope_table(p, 512, 1048576).attention_scaling == 1.0f);
}

TEST_CASE("sinkhorn gives a doubly stochastic comb", "[forward]") {
  for (uint32_t seed : {1u, 2u, 3u}) {
    // 20 iterations on unit-scale logits: columns exact after the last step, rows close.
    const std::vector<float> logits = randn(16, seed, 1.0f);
    std::vector<float> comb(16);
    sinkhorn_comb(logits.data(), 4, 20, 1e-6f, comb.data());
    for (int i = 0; i < 4; ++i) {
      double row = 0, col = 0;
      for (int j = 0; j < 4; ++j) row += comb[i * 4 + j], col += comb[j * 4 + i];
      CHECK(row == ApproxValue(1.0).margin(1e-3));
      CHECK(col == ApproxValue(1.0).margin(1e-5));
      for (int j = 0; j < 4; ++j) CHECK(comb[i * 4 + j] > 0.0f);
    }
    // Peaked logits: the same procedure in double (transformers' order) agrees entry-wise.
    const std::vector<float> peaked = randn(16, seed, 3.0f);
    sinkhorn_comb(peaked.data(), 4, 20, 1e-6f, comb.data());
    double ref[16];
    for (int i = 0; i < 4; ++i) {
      double m = -1e300, sum = 0;
      for (int j = 0; j < 4; ++j) m = std::max(m, double(peaked[i * 4 + j]));
      for (int j = 0; j < 4; ++j) sum += std::exp(peaked[i * 4 + j] - m);
      for (int j = 0; j < 4; ++j) ref[i * 4 + j] = std::exp(peaked[i * 4 + j] - m) / sum + 1e-6;
    }
    auto cols = [&] {
      for (int j = 0; j < 4; ++j) {
        double s = 0;
        for (int i = 0; i < 4; ++i) s += ref[i * 4 + j];
        for (int i = 0; i < 4; ++i) ref[i * 4 + j] /= s + 1e-6;
      }
    };
    cols();
    for (int it = 0; it < 19; ++it) {
      for (int i = 0; i < 4; ++i) {
        double s = 0;
        for (int j = 0; j < 4; ++j) s += ref[i * 4 + j];
        for (int j = 0; j < 4; ++j) ref[i * 4 + j] /= s + 1e-6;
      }
      cols();
    }
    for (int k = 0; k < 16; ++k) CHECK(comb[k] == ApproxValue(ref[k]).margin(1e-5));
  }
  // One iteration = softmax rows (+eps), then one column normalisation only.
  const std::vector<float> logits = {0, 0, 0, 0};  // 2x2 uniform
  std::vector<float> comb(4);
  sinkhorn_comb(logits.data(), 2, 1, 0.0f, comb.data());
  for (float v : comb) CHECK(v == ApproxValue(0.5f));
}

TEST_CASE("router: sqrtsoftplus scores, bias only selects, hash table by token", "[forward]") {
  CHECK(router_score(ScoringFunc::kSqrtSoftplus, 0.0f) == ApproxValue(std::sqrt(std::log(2.0))));
  CHECK(router_score(ScoringFunc::kSqrtSoftplus, 30.0f) == ApproxValue(std::sqrt(30.0)));
  CHECK(router_score(ScoringFunc::kSigmoid, 0.0f) == ApproxValue(0.5));

  ModelConfig c = qf::model::test::small_config();
  c.n_routed_experts = 4;
  c.num_experts_per_tok = 2;
  c.routed_scaling_factor = 1.5;
  c.hidden_size = 4;
  MoeWeights w;
  w.gate = {4, 4, {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}};  // logits = x
  w.gate_bias = {0, 0, 0, 5};  // expert 3 always selected although its score is lowest
  const std::vector<float> x = {3, 2, 1, -4};
  c.num_hash_layers = 1;  // layer 0 hash-routed, 1 and 2 top-k
  const Routing r = route_tokens(c, 1, w, x.data(), 1, {}, nullptr);
  CHECK(r.experts[0] == 3);
  CHECK(r.experts[1] == 0);
  const float s0 = router_score(ScoringFunc::kSqrtSoftplus, 3),
              s3 = router_score(ScoringFunc::kSqrtSoftplus, -4);
  CHECK(r.weights[0] == ApproxValue(s3 / (s0 + s3) * 1.5));  // weights use the unbiased scores
  CHECK(r.weights[1] == ApproxValue(s0 / (s0 + s3) * 1.5));

  c.vocab_size = 3;
  w.tid2eid = {0, 1, 2, 3, 1, 2};
  const Routing h = route_tokens(c, 0, w, x.data(), 1, {1}, nullptr);  // token id 1 -> {2, 3}
  CHECK(h.experts[0] == 2);
  CHECK(h.experts[1] == 3);
}

TEST_CASE("swiglu clamps gate from above and up on both sides", "[forward]") {
  std::vector<float> gate = {20.0f, -3.0f, 0.5f}, up = {15.0f, -15.0f, 2.0f};
  swiglu_clamped(gate.data(), up.data(), 3, 10.0f);
  auto silu = [](double v) { return v / (1.0 + std::exp(-v)); };
  CHECK(gate[0] == ApproxValue(silu(10.0) * 10.0));
  CHECK(gate[1] == ApproxValue(silu(-3.0) * -10.0));
  CHECK(gate[2] == ApproxValue(silu(0.5) * 2.0));
}

TEST_CASE("sink attention matches a naive double loop", "[forward]") {
  const int64_t L = 11, H = 3, D = 8, E = 2, window = 4;
  const auto q = randn(L * H * D, 7), kv = randn(L * D, 8), comp = randn(E * D, 9);
  const auto sinks = randn(H, 10);
  std::vector<uint8_t> visible(L * E, 0);
  for (int64_t t = 0; t < L; ++t) visible[t * E + 0] = t >= 3, visible[t * E + 1] = t >= 7 && t % 2;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const auto out = sink_attention(q.data(), kv.data(), L, H, D, sinks.data(), window, comp.data(),
                                  E, visible.data(), scale);
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> logit;
      std::vector<const float*> val;
      for (int64_t j = 0; j < L; ++j) {
        if (j > t || t - j >= window) continue;
        double s = 0;
        for (int d = 0; d < D; ++d) s += double(q[(t * H + h) * D + d]) * kv[j * D + d];
        logit.push_back(s * scale);
        val.push_back(&kv[j * D]);
      }
      for (int64_t e = 0; e < E; ++e) {
        if (!visible[t * E + e]) continue;
        double s = 0;
        for (int d = 0; d < D; ++d) s += double(q[(t * H + h) * D + d]) * comp[e * D + d];
        logit.push_back(s * scale);
        val.push_back(&comp[e * D]);
      }
      double denom = std::exp(double(sinks[h]));
      for (double l : logit) denom += std::exp(l);
      for (int d = 0; d < D; ++d) {
        double o = 0;
        for (size_t k = 0; k < logit.size(); ++k) o += std::exp(logit[k]) / denom * val[k][d];
        CHECK(out[(t * H + h) * D + d] == ApproxValue(o).margin(1e-5));
      }
    }
  }
}

TEST_CASE("compressor pooling: HCA windows and CSA overlap", "[forward]") {
  RopeParams p;
  p.partial_rotary_factor = 0.25;
  const int64_t D = 8, rate = 4, L = 13;  // 3 windows, one trailing token dropped
  const RopeTable rope = make_rope_table(p, D, 4096);
  for (bool overlap : {false, true}) {
    const int64_t width = overlap ? 2 * D : D;
    const std::vector<float> ape = randn(rate * width, 3), norm(D, 1.0f);
    const auto kv = randn(L * width, 4), gate = randn(L * width, 5);
    const auto out = compress_sequence(kv.data(), gate.data(), L, ape.data(), norm.data(), rate, D,
                                       overlap, rope, 1e-6f);
    REQUIRE(out.size() == size_t(3 * D));
    for (int64_t win = 0; win < 3; ++win) {
      std::vector<float> pooled(D);
      for (int64_t d = 0; d < D; ++d) {
        std::vector<std::pair<double, double>> slots;  // (logit, value)
        for (int64_t j = 0; j < rate; ++j) {
          const int64_t row = win * rate + j;
          if (overlap && win > 0) {
            slots.push_back({gate[(row - rate) * width + d] + ape[j * width + d],
                             kv[(row - rate) * width + d]});
          }
          const int64_t off = overlap ? D : 0;
          slots.push_back(
              {gate[row * width + off + d] + ape[j * width + off + d], kv[row * width + off + d]});
        }
        double denom = 0, num = 0;
        for (auto& s : slots) denom += std::exp(s.first);
        for (auto& s : slots) num += std::exp(s.first) / denom * s.second;
        pooled[d] = static_cast<float>(num);
      }
      rms_norm_rows(pooled.data(), 1, D, nullptr, 1e-6f);
      apply_rope_trailing_n(pooled.data(), 1, D, rope, win * rate, false);
      for (int64_t d = 0; d < D; ++d)
        CHECK(out[win * D + d] == ApproxValue(pooled[d]).margin(1e-5));
    }
  }
}

TEST_CASE("indexer keeps the causal top-k entries", "[forward]") {
  const int64_t L = 16, E = 4, H = 2, D = 4, rate = 4;
  const auto q = randn(L * H * D, 11), keys = randn(E * D, 12), weights = randn(L * H, 13);
  const auto vis = indexer_select(q.data(), weights.data(), keys.data(), L, E, H, D, rate, 2);
  for (int64_t t = 0; t < L; ++t) {
    const int64_t n_causal = (t + 1) / rate;
    int64_t n_vis = 0;
    for (int64_t e = 0; e < E; ++e) {
      n_vis += vis[t * E + e];
      if (e >= n_causal) CHECK(vis[t * E + e] == 0);
    }
    CHECK(n_vis == std::min<int64_t>(2, n_causal));
    if (n_causal == 3) {  // the unpicked entry scores lowest
      std::vector<double> s(3, 0.0);
      for (int64_t e = 0; e < 3; ++e) {
        for (int64_t h = 0; h < H; ++h) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += double(q[(t * H + h) * D + d]) * keys[e * D + d];
          s[e] += std::max(dot, 0.0) / std::sqrt(double(D)) * weights[t * H + h];
        }
      }
      for (int64_t e = 0; e < 3; ++e) {
        if (vis[t * E + e]) continue;
        for (int64_t o = 0; o < 3; ++o) CHECK(s[e] <= s[o]);
      }
    }
  }
}
