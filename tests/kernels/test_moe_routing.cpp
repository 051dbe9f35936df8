// GPU vs CPU reference for the MoE routing family (kernels/forward/moe_routing.cuh): router top-k
// (both scorings, exact ties, hash tables with repeats, bad token ids), the dispatch (bit-identical
// offsets and rows for uniform, skewed and repeating assignments, bad expert ids), the BF16 gather
// with per-expert amax (NaN, Inf, scalar fallback) and the combine (bit-identical). Needs a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "gpu_test_util.hpp"
#include "kernels/forward/moe_routing.cuh"
#include "model/forward_moe.hpp"
#include "numerics/host_device.hpp"
#include "ops/moe_math.hpp"

using namespace qf;
using qf::test::count_mismatches;
using qf::test::download;
using qf::test::Exact;
using qf::test::Mismatches;
using qf::test::to_device;
using qf::test::upload;
using namespace qf::kernels;

namespace {

// Device libm (expf, log1pf) vs glibc: a few ulp on a score, so on weights.
constexpr float kWeightRelTol = 1e-5f;

float host_score(RouterScoring scoring, float logit) {
  return ops::router_score(scoring == RouterScoring::kSigmoid ? ops::ScoringFunc::kSigmoid
                                                              : ops::ScoringFunc::kSqrtSoftplus,
                           logit);
}

// Runs launch_route on a copy of the host params p (host pointers) and returns experts, weights
// and the error flag.
struct RouteResult {
  std::vector<int32_t> experts;
  std::vector<float> weights;
  int32_t error_flag = 0;
};

RouteResult run_route_ref(RouteParams p) {
  RouteResult r;
  r.experts.assign(p.n_tokens * p.top_k, -7);
  r.weights.assign(p.n_tokens * p.top_k, -7.0f);
  p.experts = r.experts.data();
  p.weights = r.weights.data();
  p.error_flag = &r.error_flag;
  route_ref(p);
  return r;
}

RouteResult run_route_gpu(RouteParams p, const std::vector<float>& logits,
                          const std::vector<float>& bias, const std::vector<int32_t>& tid2eid,
                          const std::vector<int64_t>& ids) {
  const size_t n_out = static_cast<size_t>(p.n_tokens * p.top_k);
  DeviceBuffer<float> d_logits = to_device(logits), d_bias = to_device(bias);
  DeviceBuffer<int32_t> d_tid2eid = to_device(tid2eid);
  DeviceBuffer<int64_t> d_ids = to_device(ids);
  DeviceBuffer<int32_t> d_experts(n_out + 1), d_flag(1);
  DeviceBuffer<float> d_weights(n_out + 1);
  QF_CUDA_CHECK(cudaMemset(d_experts.get(), 0xAB, (n_out + 1) * 4), "poison");
  QF_CUDA_CHECK(cudaMemset(d_weights.get(), 0xAB, (n_out + 1) * 4), "poison");
  QF_CUDA_CHECK(cudaMemset(d_flag.get(), 0, 4), "flag");
  p.logits = d_logits.get();
  p.gate_bias = p.gate_bias != nullptr ? d_bias.get() : nullptr;
  p.tid2eid = p.tid2eid != nullptr ? d_tid2eid.get() : nullptr;
  p.token_ids = p.token_ids != nullptr ? d_ids.get() : nullptr;
  p.experts = d_experts.get();
  p.weights = d_weights.get();
  p.error_flag = d_flag.get();
  CudaStream stream;
  launch_route(p, stream.get());
  stream.synchronize("route");
  RouteResult r;
  r.experts = download(d_experts.get(), n_out);
  r.weights = download(d_weights.get(), n_out);
  r.error_flag = download(d_flag.get(), 1)[0];
  const std::vector<int32_t> tail = download(d_experts.get() + n_out, 1);
  CHECK(tail[0] == static_cast<int32_t>(0xABABABABu));  // nothing written past the end
  return r;
}

// Top-k selections may differ from the reference only at near-ties of score + bias (device and
// host libm differ by an ulp): every GPU pick must rank like the reference's pick of that slot.
// Returns the number of tokens whose selection differs; weights are checked where it agrees.
size_t check_topk_near(const RouteParams& p, const std::vector<float>& logits,
                       const std::vector<float>& bias, const RouteResult& gpu,
                       const RouteResult& ref) {
  const int64_t k = p.top_k, n_exp = p.n_experts;
  size_t n_differ = 0;
  Mismatches bad("experts [token, slot]", k), bad_weight("weights [token, slot]", k);
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    auto biased = [&](int32_t e) {
      return host_score(p.scoring, logits[t * n_exp + e]) + (bias.empty() ? 0.0f : bias[e]);
    };
    bool same = true;
    std::vector<int32_t> picked;
    for (int64_t s = 0; s < k; ++s) {
      const int32_t g = gpu.experts[t * k + s], r = ref.experts[t * k + s];
      if (g == r) {
        picked.push_back(g);
        continue;
      }
      same = false;
      const bool in_range = g >= 0 && g < n_exp;
      const bool unique = std::find(picked.begin(), picked.end(), g) == picked.end();
      picked.push_back(g);
      const float bg = in_range ? biased(g) : 0.0f, br = biased(r);
      bad.check(in_range && unique && !(std::fabs(bg - br) > 1e-5f * std::max(1.0f, std::fabs(br))),
                uint64_t(t * k + s), g, r);
    }
    if (!same) {
      ++n_differ;
      continue;
    }
    for (int64_t s = 0; s < k; ++s) {
      const float g = gpu.weights[t * k + s], r = ref.weights[t * k + s];
      bad_weight.check(std::fabs(g - r) <= kWeightRelTol * std::fabs(r), uint64_t(t * k + s), g, r);
    }
  }
  CHECK(bad.count() == 0);
  CHECK(bad_weight.count() == 0);
  return n_differ;
}

std::vector<float> random_logits(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 2.5f);
  std::uniform_int_distribution<int> pick(0, 99);
  std::vector<float> v(n);
  for (float& x : v) {
    x = normal(rng);
    if (pick(rng) == 0) x = 20.0f + std::fabs(x);  // softplus passthrough
    if (pick(rng) == 1) x = 19.99f;
  }
  return v;
}

struct Dispatch {
  std::vector<int32_t> offsets, row_token, row_slot, token_row;
  int32_t error_flag = 0;
};

Dispatch dispatch_ref(const std::vector<int32_t>& experts, int64_t n_tokens, int64_t k,
                      int64_t n_exp) {
  Dispatch d;
  d.offsets.assign(n_exp + 1, -7);
  d.row_token.assign(n_tokens * k, -7);
  d.row_slot.assign(n_tokens * k, -7);
  d.token_row.assign(n_tokens * k, -7);
  MoeDispatchParams p;
  p.experts = experts.data();
  p.n_tokens = n_tokens;
  p.top_k = k;
  p.n_experts = n_exp;
  p.expert_offsets = d.offsets.data();
  p.row_token = d.row_token.data();
  p.row_slot = d.row_slot.data();
  p.token_row = d.token_row.data();
  p.error_flag = &d.error_flag;
  moe_dispatch_ref(p);
  return d;
}

Dispatch dispatch_gpu(const std::vector<int32_t>& experts, int64_t n_tokens, int64_t k,
                      int64_t n_exp) {
  const size_t n_assign = static_cast<size_t>(n_tokens * k);
  DeviceBuffer<int32_t> d_experts = to_device(experts);
  DeviceBuffer<int32_t> d_offsets(n_exp + 1), d_row_token(n_assign + 1), d_row_slot(n_assign + 1),
      d_token_row(n_assign + 1), d_flag(1);
  for (auto* b : {&d_offsets, &d_row_token, &d_row_slot, &d_token_row}) {
    QF_CUDA_CHECK(cudaMemset(b->get(), 0xF9, b->n_elems() * 4), "poison");  // reads as -7 ish
  }
  QF_CUDA_CHECK(cudaMemset(d_flag.get(), 0, 4), "flag");
  MoeDispatchParams p;
  p.experts = d_experts.get();
  p.n_tokens = n_tokens;
  p.top_k = k;
  p.n_experts = n_exp;
  p.expert_offsets = d_offsets.get();
  p.row_token = d_row_token.get();
  p.row_slot = d_row_slot.get();
  p.token_row = d_token_row.get();
  p.error_flag = d_flag.get();
  const size_t ws_bytes = moe_dispatch_workspace_bytes(p);
  DeviceBuffer<uint8_t> workspace(ws_bytes);
  // Garbage in the workspace must not matter.
  if (ws_bytes) QF_CUDA_CHECK(cudaMemset(workspace.get(), 0x5A, ws_bytes), "poison");
  p.workspace = workspace.get();
  CudaStream stream;
  launch_moe_dispatch(p, stream.get());
  stream.synchronize("dispatch");
  Dispatch d;
  d.offsets = download(d_offsets.get(), n_exp + 1);
  d.row_token = download(d_row_token.get(), n_assign);
  d.row_slot = download(d_row_slot.get(), n_assign);
  d.token_row = download(d_token_row.get(), n_assign);
  d.error_flag = download(d_flag.get(), 1)[0];
  return d;
}

enum class Assign { kDistinct, kSkewed, kRepeats, kBadIds };

// Expert ids per (token, slot): distinct per token (top-k like), skewed (most on 3 experts, many
// experts empty), with repeats inside a token (hash like), or with some ids out of range.
std::vector<int32_t> random_assignments(Assign kind, int64_t n_tokens, int64_t k, int64_t n_exp,
                                        std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(n_exp - 1));
  std::uniform_int_distribution<int> pct(0, 99);
  std::vector<int32_t> v(n_tokens * k);
  std::vector<int32_t> perm(n_exp);
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (kind == Assign::kDistinct) {
      for (int64_t e = 0; e < n_exp; ++e) perm[e] = static_cast<int32_t>(e);
      for (int64_t s = 0; s < k; ++s) {
        std::uniform_int_distribution<int64_t> rest(s, n_exp - 1);
        std::swap(perm[s], perm[rest(rng)]);
        v[t * k + s] = perm[s];
      }
      continue;
    }
    for (int64_t s = 0; s < k; ++s) {
      int32_t e = any(rng);
      if (kind == Assign::kSkewed) {
        const int r = pct(rng);
        e = r < 60 ? static_cast<int32_t>(n_exp - 1) : r < 80 ? 0 : r < 90 ? e % 3 : e;
      } else if (kind == Assign::kRepeats) {
        if (s > 0 && pct(rng) < 40) e = v[t * k + s - 1 - (s > 1 && pct(rng) < 50)];
      } else if (pct(rng) < 3) {
        e = pct(rng) < 50 ? -1 : static_cast<int32_t>(n_exp + pct(rng));
      }
      v[t * k + s] = e;
    }
  }
  return v;
}

}  // namespace

// ---- routing ------------------------------------------------------------------------------------

TEST_CASE("moe routing gpu: top-k route matches the reference", "[gpu][moe]") {
  const auto shape =
      GENERATE(std::make_tuple(1, 8, 2), std::make_tuple(37, 16, 4), std::make_tuple(2000, 256, 6),
               std::make_tuple(513, 384, 8), std::make_tuple(64, 33, 8),
               std::make_tuple(200, 64, 1), std::make_tuple(100, 8, 8));
  const RouterScoring scoring = GENERATE(RouterScoring::kSqrtSoftplus, RouterScoring::kSigmoid);
  const bool with_bias = GENERATE(true, false);
  const auto [n_tokens, n_exp, k] = shape;
  CAPTURE(n_tokens, n_exp, k, static_cast<int>(scoring), with_bias);
  std::mt19937 rng(static_cast<uint32_t>(n_tokens * 131 + n_exp * 7 + k));
  const std::vector<float> logits = random_logits(static_cast<size_t>(n_tokens) * n_exp, rng);
  std::vector<float> bias;
  if (with_bias) {
    std::normal_distribution<float> normal(0.0f, 0.3f);
    for (int e = 0; e < n_exp; ++e) bias.push_back(normal(rng));
  }
  RouteParams p;
  p.logits = logits.data();
  p.gate_bias = with_bias ? bias.data() : nullptr;
  p.n_tokens = n_tokens;
  p.n_experts = n_exp;
  p.top_k = k;
  p.scoring = scoring;
  p.routed_scaling = 2.5f;
  const RouteResult ref = run_route_ref(p);
  const RouteResult gpu = run_route_gpu(p, logits, bias, {}, {});
  CHECK(gpu.error_flag == 0);
  const size_t n_differ = check_topk_near(p, logits, bias, gpu, ref);
  CHECK(n_differ * 100 <= static_cast<size_t>(n_tokens));  // near-ties only: rare
}

TEST_CASE("moe routing gpu: exact scores and bias ties route bit-identically", "[gpu][moe]") {
  // sqrt(softplus(x)) passes x > 20 through and sqrtf is correctly rounded on both sides, so
  // the scores are bit-identical; integer logits and a coarse bias create many exact ties, which
  // must go to the lower expert id. Sigmoid(0) = 0.5 exactly: only the bias differs.
  const RouterScoring scoring = GENERATE(RouterScoring::kSqrtSoftplus, RouterScoring::kSigmoid);
  const auto shape = GENERATE(std::make_tuple(300, 384, 8), std::make_tuple(257, 256, 6),
                              std::make_tuple(50, 5, 3));
  const auto [n_tokens, n_exp, k] = shape;
  CAPTURE(static_cast<int>(scoring), n_tokens, n_exp, k);
  std::mt19937 rng(static_cast<uint32_t>(n_tokens + n_exp));
  std::uniform_int_distribution<int> logit(21, 26), pick(0, 4);
  const float kBias[] = {0.0f, 0.0f, 1.0f, 2.0f, -1.0f};
  std::vector<float> logits(static_cast<size_t>(n_tokens) * n_exp), bias(n_exp);
  for (float& x : logits)
    x = scoring == RouterScoring::kSigmoid ? 0.0f : static_cast<float>(logit(rng));
  for (float& b : bias) b = kBias[pick(rng)];
  RouteParams p;
  p.logits = logits.data();
  p.gate_bias = bias.data();
  p.n_tokens = n_tokens;
  p.n_experts = n_exp;
  p.top_k = k;
  p.scoring = scoring;
  p.routed_scaling = 1.5f;
  const RouteResult ref = run_route_ref(p);
  const RouteResult gpu = run_route_gpu(p, logits, bias, {}, {});
  CHECK(count_mismatches(gpu.experts, ref.experts, "experts") == 0);
  CHECK(count_mismatches(gpu.weights, ref.weights, "weights") == 0);
  CHECK(gpu.error_flag == 0);
}

TEST_CASE("moe routing gpu: hash route with repeats and bad token ids", "[gpu][moe]") {
  const bool bad_ids = GENERATE(false, true);
  const bool exact_scores = GENERATE(false, true);
  const int64_t n_tokens = 777, n_exp = 256, k = 6, vocab = 1000;
  CAPTURE(bad_ids, exact_scores);
  std::mt19937 rng(bad_ids ? 5 : 6);
  std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(n_exp - 1));
  std::uniform_int_distribution<int64_t> tok(0, vocab - 1);
  std::uniform_int_distribution<int> pct(0, 99), logit(21, 40);
  std::vector<int32_t> tid2eid(vocab * k);
  for (int64_t v = 0; v < vocab; ++v) {
    for (int64_t s = 0; s < k; ++s) {
      tid2eid[v * k + s] = s > 0 && pct(rng) < 20 ? tid2eid[v * k + s - 1] : any(rng);
    }
  }
  std::vector<int64_t> ids(n_tokens);
  for (auto& id : ids) id = tok(rng);
  if (bad_ids) {
    ids[3] = -1;
    ids[n_tokens - 1] = vocab;
    ids[100] = int64_t{1} << 40;
  }
  std::vector<float> logits = random_logits(static_cast<size_t>(n_tokens * n_exp), rng);
  if (exact_scores) {
    for (float& x : logits) x = static_cast<float>(logit(rng));
  }
  RouteParams p;
  p.logits = logits.data();
  p.tid2eid = tid2eid.data();
  p.token_ids = ids.data();
  p.n_tokens = n_tokens;
  p.n_experts = n_exp;
  p.top_k = k;
  p.vocab = vocab;
  p.scoring = RouterScoring::kSqrtSoftplus;
  p.routed_scaling = 2.5f;
  const RouteResult ref = run_route_ref(p);
  const RouteResult gpu = run_route_gpu(p, logits, {}, tid2eid, ids);
  CHECK(gpu.error_flag == (bad_ids ? 1 : 0));
  CHECK(ref.error_flag == gpu.error_flag);
  CHECK(count_mismatches(gpu.experts, ref.experts, "experts") == 0);
  if (exact_scores) {
    CHECK(count_mismatches(gpu.weights, ref.weights, "weights") == 0);
  } else {
    Mismatches bad("weights");
    for (size_t i = 0; i < ref.weights.size(); ++i) {
      const float g = gpu.weights[i], r = ref.weights[i];
      bad.check(std::fabs(g - r) <= kWeightRelTol * std::fabs(r), i, g, r);
    }
    CHECK(bad.count() == 0);
  }
  if (bad_ids) {
    for (int64_t s = 0; s < k; ++s) {
      CHECK(gpu.experts[3 * k + s] == 0);
      CHECK(gpu.weights[100 * k + s] == 0.0f);
    }
  }
}

TEST_CASE("moe routing gpu: route launcher rejects bad shapes", "[gpu][moe]") {
  RouteParams p;
  p.n_tokens = 1;
  p.n_experts = 385;
  p.top_k = 2;
  CHECK_THROWS_AS(launch_route(p, nullptr), qf::Error);
  p.n_experts = 16;
  p.top_k = 9;
  CHECK_THROWS_AS(launch_route(p, nullptr), qf::Error);
}

// ---- dispatch -----------------------------------------------------------------------------------

TEST_CASE("moe routing gpu: dispatch is bit-identical to the reference", "[gpu][moe]") {
  const auto shape =
      GENERATE(std::make_tuple(0, 6, 256), std::make_tuple(1, 1, 1), std::make_tuple(7, 2, 4),
               std::make_tuple(3000, 3, 17), std::make_tuple(1000, 6, 256),
               std::make_tuple(4097, 8, 384), std::make_tuple(16384, 6, 256),
               std::make_tuple(65536, 8, 384), std::make_tuple(100, 8, 1024));
  const Assign kind =
      GENERATE(Assign::kDistinct, Assign::kSkewed, Assign::kRepeats, Assign::kBadIds);
  const auto [n_tokens, k, n_exp] = shape;
  if (kind == Assign::kDistinct && k > n_exp) return;
  CAPTURE(n_tokens, k, n_exp, static_cast<int>(kind));
  std::mt19937 rng(static_cast<uint32_t>(n_tokens * 3 + k * 5 + n_exp));
  const std::vector<int32_t> experts = random_assignments(kind, n_tokens, k, n_exp, rng);
  const Dispatch ref = dispatch_ref(experts, n_tokens, k, n_exp);
  const Dispatch gpu = dispatch_gpu(experts, n_tokens, k, n_exp);
  CHECK(gpu.error_flag == ref.error_flag);
  CHECK(count_mismatches(gpu.offsets, ref.offsets, "offsets") == 0);
  CHECK(count_mismatches(gpu.token_row, ref.token_row, "token_row") == 0);
  // Rows past offsets[n_experts] (dropped assignments) are left unwritten by both.
  const size_t n_rows = static_cast<size_t>(ref.offsets[n_exp]);
  std::vector<int32_t> gpu_rows(gpu.row_token.begin(), gpu.row_token.begin() + n_rows);
  std::vector<int32_t> ref_rows(ref.row_token.begin(), ref.row_token.begin() + n_rows);
  CHECK(count_mismatches(gpu_rows, ref_rows, "row_token") == 0);
  gpu_rows.assign(gpu.row_slot.begin(), gpu.row_slot.begin() + n_rows);
  ref_rows.assign(ref.row_slot.begin(), ref.row_slot.begin() + n_rows);
  CHECK(count_mismatches(gpu_rows, ref_rows, "row_slot") == 0);
}

// ---- gather -------------------------------------------------------------------------------------

TEST_CASE("moe routing gpu: gather BF16 rows and amax are bit-identical", "[gpu][moe]") {
  const auto shape = GENERATE(std::make_tuple(300, 6, 64, 4096), std::make_tuple(50, 8, 16, 16),
                              std::make_tuple(33, 2, 5, 7), std::make_tuple(129, 3, 40, 4100),
                              std::make_tuple(1, 1, 1, 2048));
  const bool unaligned = GENERATE(false, true);  // x at a 4-byte offset: scalar path
  const bool bad_ids = GENERATE(false, true);    // some assignments dropped: fewer rows
  const auto [n_tokens, k, n_exp, dim] = shape;
  CAPTURE(n_tokens, k, n_exp, dim, unaligned, bad_ids);
  std::mt19937 rng(static_cast<uint32_t>(n_tokens + dim));
  const std::vector<int32_t> experts =
      random_assignments(bad_ids ? Assign::kBadIds : Assign::kRepeats, n_tokens, k, n_exp, rng);
  const Dispatch d = dispatch_ref(experts, n_tokens, k, n_exp);

  // Normal values plus BF16 rounding ties, NaN (either sign, payloads), Inf, -0, subnormals.
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int> pct(0, 999);
  const uint32_t kSpecial[] = {0x7FC00000u, 0xFFC00001u, 0x7F800001u, 0x7F800000u, 0xFF800000u,
                               0x80000000u, 0x00000001u, 0x3F808000u, 0x3F818000u, 0x7F7FFFFFu};
  std::vector<float> x(static_cast<size_t>(n_tokens * dim) + 1);
  for (float& v : x) {
    const int r = pct(rng);
    v = r < 990 ? normal(rng) : numerics::bits_to_float(kSpecial[r - 990]);
  }
  std::vector<uint32_t> amax_ref(n_exp);
  for (auto& a : amax_ref) a = pct(rng) < 500 ? 0u : 0x40000000u;  // some slots already hold 2.0
  std::vector<uint32_t> amax_gpu = amax_ref;
  const int64_t n_rows = n_tokens * k;
  std::vector<uint16_t> rows_ref(n_rows * dim, 0xDEAD);

  MoeGatherParams p;
  p.x = x.data() + (unaligned ? 1 : 0);
  p.row_token = d.row_token.data();
  p.expert_offsets = d.offsets.data();
  p.n_rows = n_rows;
  p.dim = dim;
  p.n_experts = n_exp;
  p.rows_bf16 = rows_ref.data();
  p.amax_bits = amax_ref.data();
  moe_gather_ref(p);

  DeviceBuffer<float> d_x = to_device(x);
  DeviceBuffer<int32_t> d_row_token = to_device(d.row_token), d_offsets = to_device(d.offsets);
  DeviceBuffer<uint32_t> d_amax = to_device(amax_gpu);
  DeviceBuffer<uint16_t> d_rows(n_rows * dim + 1);
  QF_CUDA_CHECK(cudaMemset(d_rows.get(), 0xAD, (n_rows * dim + 1) * 2), "poison");
  std::fill(rows_ref.begin() + std::min<int64_t>(d.offsets[n_exp], n_rows) * dim, rows_ref.end(),
            0xADAD);  // untouched rows hold the device poison
  p.x = d_x.get() + (unaligned ? 1 : 0);
  p.row_token = d_row_token.get();
  p.expert_offsets = d_offsets.get();
  p.rows_bf16 = d_rows.get();
  p.amax_bits = d_amax.get();
  CudaStream stream;
  launch_moe_gather(p, stream.get());
  stream.synchronize("gather");
  CHECK(count_mismatches(download(d_rows.get(), n_rows * dim), rows_ref, "rows") == 0);
  CHECK(count_mismatches(download(d_amax.get(), n_exp), amax_ref, "amax") == 0);
}

// ---- combine ------------------------------------------------------------------------------------

TEST_CASE("moe routing gpu: combine is bit-identical to the reference", "[gpu][moe]") {
  const auto shape =
      GENERATE(std::make_tuple(1, 1, 4), std::make_tuple(300, 6, 4096), std::make_tuple(77, 8, 130),
               std::make_tuple(1000, 2, 16), std::make_tuple(64, 8, 7));
  const bool with_shared = GENERATE(true, false);
  const bool bad_ids = GENERATE(false, true);
  const auto [n_tokens, k, dim] = shape;
  const int64_t n_exp = 24;
  CAPTURE(n_tokens, k, dim, with_shared, bad_ids);
  std::mt19937 rng(static_cast<uint32_t>(n_tokens * 11 + dim));
  const std::vector<int32_t> experts =
      random_assignments(bad_ids ? Assign::kBadIds : Assign::kRepeats, n_tokens, k, n_exp, rng);
  const Dispatch d = dispatch_ref(experts, n_tokens, k, n_exp);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pct(0, 9999);
  auto fill = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) {
      const int r = pct(rng);
      x = r == 0 ? std::numeric_limits<float>::infinity() : r == 1 ? -0.0f : normal(rng) * 1e3f;
    }
    return v;
  };
  const std::vector<float> y = fill(static_cast<size_t>(n_tokens * k * dim));
  const std::vector<float> shared = fill(static_cast<size_t>(n_tokens * dim));
  std::vector<float> weights(n_tokens * k);
  std::uniform_real_distribution<float> wdist(0.0f, 2.0f);
  for (float& w : weights) w = wdist(rng);

  std::vector<float> out_ref(n_tokens * dim, -7.0f);
  MoeCombineParams p;
  p.y = y.data();
  p.experts = experts.data();
  p.weights = weights.data();
  p.token_row = d.token_row.data();
  p.shared = with_shared ? shared.data() : nullptr;
  p.n_tokens = n_tokens;
  p.top_k = k;
  p.dim = dim;
  p.out = out_ref.data();
  moe_combine_ref(p);

  DeviceBuffer<float> d_y = to_device(y), d_shared = to_device(shared),
                      d_weights = to_device(weights);
  DeviceBuffer<int32_t> d_experts = to_device(experts), d_token_row = to_device(d.token_row);
  DeviceBuffer<float> d_out(n_tokens * dim);
  p.y = d_y.get();
  p.experts = d_experts.get();
  p.weights = d_weights.get();
  p.token_row = d_token_row.get();
  p.shared = with_shared ? d_shared.get() : nullptr;
  p.out = d_out.get();
  CudaStream stream;
  launch_moe_combine(p, stream.get());
  stream.synchronize("combine");
  // Inf - Inf makes NaNs, whose payload differs between x86 and the GPU: NaN matches NaN.
  CHECK(count_mismatches(download(d_out.get(), n_tokens * dim), out_ref, "out", Exact::kNanEqual) ==
        0);
}
