// The MoE routing references (kernels/forward/moe_routing.cuh) compose into model::moe_forward bit
// for bit: route_ref + moe_dispatch_ref + model::expert_forward on the gathered rows (FP32 here)
// + moe_combine_ref, on a tiny hand-built MoE with a top-k and a hash layer. Also route_ref vs
// model::route_tokens, the gather's BF16/amax, and the error paths. CPU only.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "kernels/forward/moe_routing.cuh"
#include "model/forward_linear.hpp"
#include "model/forward_moe.hpp"
#include "numerics/bf16.hpp"

using namespace qf;
using namespace qf::kernels;

namespace {

constexpr int64_t kHidden = 16, kInter = 8, kExperts = 6, kTopK = 3, kVocab = 12;
constexpr int kHashLayer = 0, kTopKLayer = 1;  // hash layers come first
constexpr int kUnusedExpert = 4;  // never selected in either layer: an expert with zero rows

model::Tensor2D random_tensor(int64_t n_rows, int64_t n_cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(n_cols)));
  model::Tensor2D t;
  t.n_rows = n_rows;
  t.n_cols = n_cols;
  t.data.resize(n_rows * n_cols);
  for (float& x : t.data) x = normal(rng);
  return t;
}

model::ExpertWeights random_expert(std::mt19937& rng) {
  model::ExpertWeights e;
  e.w1 = random_tensor(kInter, kHidden, rng);
  e.w3 = random_tensor(kInter, kHidden, rng);
  e.w2 = random_tensor(kHidden, kInter, rng);
  return e;
}

model::ModelConfig tiny_config(ops::ScoringFunc scoring) {
  model::ModelConfig c;
  c.vocab_size = kVocab;
  c.hidden_size = kHidden;
  c.num_hidden_layers = 2;
  c.n_routed_experts = kExperts;
  c.num_experts_per_tok = kTopK;
  c.moe_intermediate_size = kInter;
  c.num_hash_layers = 1;
  c.scoring_func = scoring;
  c.routed_scaling_factor = 1.5;
  c.swiglu_limit = 1.0;  // small enough that the clamp is active
  return c;
}

// Gate scaled up so routing is decisive; expert kUnusedExpert is biased out of the top-k. The hash
// table repeats an expert within some rows (token 3: expert 2 twice; token 7: expert 0 three
// times), which transformers' mask/index_add handles as separate assignments.
model::MoeWeights tiny_weights(uint32_t seed) {
  std::mt19937 rng(seed);
  model::MoeWeights w;
  w.gate = random_tensor(kExperts, kHidden, rng);
  for (float& x : w.gate.data) x *= 4.0f;
  std::normal_distribution<float> bias(0.0f, 0.1f);
  w.gate_bias.resize(kExperts);
  for (float& b : w.gate_bias) b = bias(rng);
  w.gate_bias[kUnusedExpert] = -100.0f;
  w.tid2eid.resize(kVocab * kTopK);
  std::uniform_int_distribution<int> pick(0, kExperts - 2);
  for (int32_t& e : w.tid2eid) {
    e = pick(rng);
    if (e >= kUnusedExpert) ++e;
  }
  w.tid2eid[3 * kTopK + 0] = 2;
  w.tid2eid[3 * kTopK + 2] = 2;
  for (int64_t s = 0; s < kTopK; ++s) w.tid2eid[7 * kTopK + s] = 0;
  for (int64_t e = 0; e < kExperts; ++e) w.experts.push_back(random_expert(rng));
  w.shared = random_expert(rng);
  return w;
}

std::vector<float> random_x(int64_t n_tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n_tokens * kHidden);
  for (float& v : x) v = normal(rng);
  return x;
}

std::vector<int64_t> token_ids(int64_t n_tokens) {
  std::vector<int64_t> ids(n_tokens);
  for (int64_t t = 0; t < n_tokens; ++t) ids[t] = (t * 5 + 3) % kVocab;  // covers 3 and 7
  return ids;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

RouteParams route_params(const model::ModelConfig& c, int layer, const model::MoeWeights& w,
                         const std::vector<float>& logits, const std::vector<int64_t>& ids,
                         int64_t n_tokens) {
  RouteParams p;
  p.logits = logits.data();
  const bool hash = c.is_hash_layer(layer);
  p.gate_bias = hash ? nullptr : w.gate_bias.data();
  p.tid2eid = hash ? w.tid2eid.data() : nullptr;
  p.token_ids = ids.data();
  p.n_tokens = n_tokens;
  p.n_experts = c.n_routed_experts;
  p.top_k = c.num_experts_per_tok;
  p.vocab = c.vocab_size;
  p.scoring = c.scoring_func == ops::ScoringFunc::kSigmoid ? RouterScoring::kSigmoid
                                                           : RouterScoring::kSqrtSoftplus;
  p.routed_scaling = static_cast<float>(c.routed_scaling_factor);
  return p;
}

}  // namespace

TEST_CASE("moe routing refs compose into model::moe_forward bit for bit", "[forward][moe]") {
  const auto scoring = GENERATE(ops::ScoringFunc::kSqrtSoftplus, ops::ScoringFunc::kSigmoid);
  const int layer = GENERATE(kTopKLayer, kHashLayer);
  const int64_t n_tokens = GENERATE(int64_t{1}, int64_t{13}, int64_t{40});
  CAPTURE(static_cast<int>(scoring), layer, n_tokens);
  const model::ModelConfig c = tiny_config(scoring);
  const model::MoeWeights w = tiny_weights(7);
  const std::vector<float> x = random_x(n_tokens, static_cast<uint32_t>(n_tokens));
  const std::vector<int64_t> ids = token_ids(n_tokens);
  const float limit = static_cast<float>(c.swiglu_limit);
  const int64_t k = kTopK, n_assign = n_tokens * k;

  // Route (the gate GEMM is the caller's: model::matmul_ref, as linear_forward does).
  std::vector<float> logits(n_tokens * kExperts);
  model::matmul_ref(x.data(), n_tokens, w.gate, logits.data());
  std::vector<int32_t> experts(n_assign, -7);
  std::vector<float> weights(n_assign, -7.0f);
  int32_t error_flag = 0;
  RouteParams rp = route_params(c, layer, w, logits, ids, n_tokens);
  rp.experts = experts.data();
  rp.weights = weights.data();
  rp.error_flag = &error_flag;
  route_ref(rp);
  CHECK(error_flag == 0);
  const model::Routing r = model::route_tokens(c, layer, w, x.data(), n_tokens, ids, nullptr);
  CHECK(experts == r.experts);
  CHECK(same_bits(weights, r.weights));

  // Dispatch.
  std::vector<int32_t> offsets(kExperts + 1, -7), row_token(n_assign, -7), row_slot(n_assign, -7),
      token_row(n_assign, -7);
  MoeDispatchParams dp;
  dp.experts = experts.data();
  dp.n_tokens = n_tokens;
  dp.top_k = k;
  dp.n_experts = kExperts;
  dp.expert_offsets = offsets.data();
  dp.row_token = row_token.data();
  dp.row_slot = row_slot.data();
  dp.token_row = token_row.data();
  dp.error_flag = &error_flag;
  moe_dispatch_ref(dp);
  CHECK(error_flag == 0);
  REQUIRE(offsets[kExperts] == n_assign);
  CHECK(offsets[kUnusedExpert] == offsets[kUnusedExpert + 1]);
  for (int64_t i = 0; i < n_assign; ++i) {
    REQUIRE(token_row[row_token[i] * k + row_slot[i]] == i);
    REQUIRE(experts[row_token[i] * k + row_slot[i]] >= 0);
  }

  // Gather: BF16 bits and per-expert amax.
  std::vector<uint16_t> rows_bf16(n_assign * kHidden, 0xDEAD);
  std::vector<uint32_t> amax(kExperts, 0);
  MoeGatherParams gp;
  gp.x = x.data();
  gp.row_token = row_token.data();
  gp.expert_offsets = offsets.data();
  gp.n_rows = n_assign;
  gp.dim = kHidden;
  gp.n_experts = kExperts;
  gp.rows_bf16 = rows_bf16.data();
  gp.amax_bits = amax.data();
  moe_gather_ref(gp);
  for (int64_t e = 0; e < kExperts; ++e) {
    uint32_t want = 0;
    for (int64_t i = offsets[e]; i < offsets[e + 1]; ++i) {
      for (int64_t d = 0; d < kHidden; ++d) {
        const float v = x[row_token[i] * kHidden + d];
        REQUIRE(rows_bf16[i * kHidden + d] == numerics::float_to_bf16(v));
        want = std::max(want, numerics::float_to_bits(std::fabs(v)));
      }
    }
    CHECK(amax[e] == want);
  }

  // Experts on the FP32 gathered rows, in expert order, then combine.
  std::vector<float> y(n_assign * kHidden, std::numeric_limits<float>::quiet_NaN());
  for (int64_t e = 0; e < kExperts; ++e) {
    const int64_t n_rows = offsets[e + 1] - offsets[e];
    if (n_rows == 0) continue;
    std::vector<float> rows(n_rows * kHidden);
    for (int64_t i = 0; i < n_rows; ++i) {
      const float* src = x.data() + row_token[offsets[e] + i] * kHidden;
      std::copy(src, src + kHidden, rows.begin() + i * kHidden);
    }
    const std::vector<float> ye =
        model::expert_forward("e", w.experts[e], rows.data(), n_rows, limit, nullptr);
    std::copy(ye.begin(), ye.end(), y.begin() + offsets[e] * kHidden);
  }
  const std::vector<float> shared =
      model::expert_forward("s", w.shared, x.data(), n_tokens, limit, nullptr);
  std::vector<float> out(n_tokens * kHidden, -7.0f);
  MoeCombineParams cp;
  cp.y = y.data();
  cp.experts = experts.data();
  cp.weights = weights.data();
  cp.token_row = token_row.data();
  cp.shared = shared.data();
  cp.n_tokens = n_tokens;
  cp.top_k = k;
  cp.dim = kHidden;
  cp.out = out.data();
  moe_combine_ref(cp);

  const std::vector<float> want = model::moe_forward(c, layer, w, x.data(), n_tokens, ids, nullptr);
  CHECK(same_bits(out, want));
}

TEST_CASE("route_ref: bias ties go to the lower expert id", "[forward][moe]") {
  // sqrt(softplus(x)) passes x > 20 through, so scores 5, 6, 6, 5 are exact; the bias makes
  // experts 0, 1, 2 and 3 tie at 6 (expert 3 gets 6.0 = 5 + 1 as well).
  const std::vector<float> logits = {25.0f, 36.0f, 36.0f, 25.0f, 21.0f};
  const std::vector<float> bias = {1.0f, 0.0f, 0.0f, 1.0f, 0.0f};
  std::vector<int32_t> experts(3);
  std::vector<float> weights(3);
  RouteParams p;
  p.logits = logits.data();
  p.gate_bias = bias.data();
  p.n_tokens = 1;
  p.n_experts = 5;
  p.top_k = 3;
  p.experts = experts.data();
  p.weights = weights.data();
  route_ref(p);
  CHECK(experts == std::vector<int32_t>{0, 1, 2});
  const float sum = 5.0f + 6.0f + 6.0f;
  CHECK(weights[0] == 5.0f / (sum + 1e-20f));
  CHECK(weights[1] == 6.0f / (sum + 1e-20f));
}

TEST_CASE("route_ref / moe_dispatch_ref flag bad ids", "[forward][moe]") {
  const std::vector<float> logits(2 * 4, 0.5f);
  const std::vector<int32_t> tid2eid = {0, 1, 2, 3, 3, 9};  // vocab 3, top-2; row 2 is bad
  const std::vector<int64_t> ids = {1, 5};                  // token 1: out of the vocabulary
  std::vector<int32_t> experts(4, -7);
  std::vector<float> weights(4, -7.0f);
  int32_t flag = 0;
  RouteParams p;
  p.logits = logits.data();
  p.tid2eid = tid2eid.data();
  p.token_ids = ids.data();
  p.n_tokens = 2;
  p.n_experts = 4;
  p.top_k = 2;
  p.vocab = 3;
  p.experts = experts.data();
  p.weights = weights.data();
  p.error_flag = &flag;
  route_ref(p);
  CHECK(flag == 1);
  CHECK(experts == std::vector<int32_t>{2, 3, 0, 0});
  CHECK(weights[2] == 0.0f);
  CHECK(weights[3] == 0.0f);

  const std::vector<int32_t> bad = {1, -1, 4, 1};  // 2 tokens x top-2, 4 experts
  std::vector<int32_t> offsets(5), row_token(4, -7), row_slot(4, -7), token_row(4);
  flag = 0;
  MoeDispatchParams dp;
  dp.experts = bad.data();
  dp.n_tokens = 2;
  dp.top_k = 2;
  dp.n_experts = 4;
  dp.expert_offsets = offsets.data();
  dp.row_token = row_token.data();
  dp.row_slot = row_slot.data();
  dp.token_row = token_row.data();
  dp.error_flag = &flag;
  moe_dispatch_ref(dp);
  CHECK(flag == 1);
  CHECK(offsets == std::vector<int32_t>{0, 0, 2, 2, 2});
  CHECK(token_row == std::vector<int32_t>{0, -1, -1, 1});
  CHECK(row_token[0] == 0);  // expert 1: slot 0 (token 0) before slot 1 (token 1)
  CHECK(row_slot[1] == 1);
}

TEST_CASE("moe_gather_ref writes NaN as 0x7FC0 and lets it win the amax", "[forward][moe]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x = {1.0f, -3.0f, -nan, 2.0f, 0.5f, -0.25f};  // 3 tokens x dim 2
  const std::vector<int32_t> row_token = {2, 0, 1, 0};
  const std::vector<int32_t> offsets = {0, 1, 1, 3};  // expert 1 empty; row 3 past the end
  std::vector<uint16_t> rows(8, 0xDEAD);
  std::vector<uint32_t> amax = {0, 0, 0x3F000000u};
  MoeGatherParams p;
  p.x = x.data();
  p.row_token = row_token.data();
  p.expert_offsets = offsets.data();
  p.n_rows = 4;
  p.dim = 2;
  p.n_experts = 3;
  p.rows_bf16 = rows.data();
  p.amax_bits = amax.data();
  moe_gather_ref(p);
  CHECK(rows ==
        std::vector<uint16_t>{0x3F00, 0xBE80, 0x3F80, 0xC040, 0x7FC0, 0x4000, 0xDEAD, 0xDEAD});
  CHECK(amax[0] == 0x3F000000u);  // 0.5
  CHECK(amax[1] == 0u);
  CHECK(numerics::is_nan_bits(amax[2]));
  CHECK(amax[2] < 0x80000000u);
}
