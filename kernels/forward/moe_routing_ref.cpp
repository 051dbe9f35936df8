// CPU references of the MoE routing kernels (moe_routing.cuh): plain loops over host pointers.
// Routing is ops::TokenRouter, the math model::route_tokens runs after its gate GEMM (only the
// hash-table error policy is the kernels' own); dispatch / combine restate model::moe_forward's
// order, so the kernels have one spec. Does not own: the expert MLPs (model::expert_forward).
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "core/check.hpp"
#include "kernels/forward/moe_routing.cuh"
#include "numerics/bf16.hpp"
#include "numerics/block_dequant.hpp"
#include "ops/moe_math.hpp"

namespace qf::kernels {

namespace {

ops::ScoringFunc to_model(RouterScoring scoring) {
  switch (scoring) {
    case RouterScoring::kSqrtSoftplus:
      return ops::ScoringFunc::kSqrtSoftplus;
    case RouterScoring::kSigmoid:
      return ops::ScoringFunc::kSigmoid;
  }
  QF_FAIL("unknown router scoring", static_cast<int>(scoring));
}

}  // namespace

// ---- routing ------------------------------------------------------------------------------------

void route_ref(const RouteParams& p) {
  QF_CHECK(p.n_experts > 0 && p.top_k > 0 && p.top_k <= p.n_experts, "route_ref: n_experts",
           p.n_experts, "top_k", p.top_k);
  const bool hash = p.tid2eid != nullptr;
  QF_CHECK(!hash || (p.token_ids != nullptr && p.error_flag != nullptr),
           "route_ref: hash routing needs token_ids and error_flag");
  const int64_t n_exp = p.n_experts, k = p.top_k;
  ops::TokenRouter router(to_model(p.scoring), n_exp, k, p.routed_scaling);
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    router.score(p.logits + t * n_exp);
    int32_t* sel = p.experts + t * k;
    float* weight = p.weights + t * k;
    if (hash) {
      // A bad token id or table entry flags the error; the token then routes to expert 0 with
      // weight 0 so that later kernels stay in bounds.
      const int64_t id = p.token_ids[t];
      bool ok = id >= 0 && id < p.vocab;
      for (int64_t s = 0; ok && s < k; ++s) {
        const int32_t e = p.tid2eid[id * k + s];
        ok = e >= 0 && e < n_exp;
      }
      if (!ok) {
        *p.error_flag = 1;
        std::fill(sel, sel + k, 0);
        std::fill(weight, weight + k, 0.0f);
        continue;
      }
      for (int64_t s = 0; s < k; ++s) sel[s] = p.tid2eid[id * k + s];
    } else {
      router.select_top_k(p.gate_bias, sel);
    }
    router.weigh(sel, weight);
  }
}

// ---- dispatch -----------------------------------------------------------------------------------

void moe_dispatch_ref(const MoeDispatchParams& p) {
  QF_CHECK(p.error_flag != nullptr, "moe_dispatch_ref: error_flag is required");
  const int64_t n_assign = p.n_tokens * p.top_k;
  std::fill(p.token_row, p.token_row + n_assign, -1);
  for (int64_t i = 0; i < n_assign; ++i) {
    if (p.experts[i] < 0 || p.experts[i] >= p.n_experts) *p.error_flag = 1;
  }
  int32_t row = 0;
  for (int64_t e = 0; e < p.n_experts; ++e) {
    p.expert_offsets[e] = row;
    // torch.where(mask[e]) order, as model::moe_forward: slot-major, then token.
    for (int64_t s = 0; s < p.top_k; ++s) {
      for (int64_t t = 0; t < p.n_tokens; ++t) {
        if (p.experts[t * p.top_k + s] != e) continue;
        p.row_token[row] = static_cast<int32_t>(t);
        p.row_slot[row] = static_cast<int32_t>(s);
        p.token_row[t * p.top_k + s] = row;
        ++row;
      }
    }
  }
  p.expert_offsets[p.n_experts] = row;
}

// ---- gather -------------------------------------------------------------------------------------

void moe_gather_ref(const MoeGatherParams& p) {
  const int64_t n_valid = std::min<int64_t>(p.n_rows, p.expert_offsets[p.n_experts]);
  for (int64_t e = 0; e < p.n_experts; ++e) {
    for (int64_t i = p.expert_offsets[e]; i < std::min<int64_t>(p.expert_offsets[e + 1], n_valid);
         ++i) {
      const float* src = p.x + static_cast<int64_t>(p.row_token[i]) * p.dim;
      uint16_t* dst = p.rows_bf16 + i * p.dim;
      uint32_t amax = 0;
      for (int64_t d = 0; d < p.dim; ++d) {
        const uint32_t bits = numerics::float_to_bits(src[d]);
        dst[d] = numerics::is_nan_bits(bits) ? numerics::kBf16CanonicalNan
                                             : numerics::float_to_bf16(src[d]);
        amax = std::max(amax, bits & 0x7FFFFFFFu);
      }
      if (p.amax_bits != nullptr) p.amax_bits[e] = std::max(p.amax_bits[e], amax);
    }
  }
}

// ---- combine ------------------------------------------------------------------------------------

void moe_combine_ref(const MoeCombineParams& p) {
  const int64_t k = p.top_k;
  std::vector<int64_t> slots(k);
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    // model::moe_forward visits experts ascending and, within one expert, slots ascending.
    std::iota(slots.begin(), slots.end(), 0);
    std::stable_sort(slots.begin(), slots.end(), [&](int64_t a, int64_t b) {
      return p.experts[t * k + a] < p.experts[t * k + b];
    });
    float* o = p.out + t * p.dim;
    std::fill(o, o + p.dim, 0.0f);
    for (int64_t s : slots) {
      const int32_t row = p.token_row[t * k + s];
      if (row < 0) continue;  // dropped by the dispatch (bad expert id)
      const float weight = p.weights[t * k + s];
      const float* y = p.y + static_cast<int64_t>(row) * p.dim;
      for (int64_t d = 0; d < p.dim; ++d) o[d] += y[d] * weight;
    }
    if (p.shared != nullptr) {
      const float* sh = p.shared + t * p.dim;
      for (int64_t d = 0; d < p.dim; ++d) o[d] += sh[d];
    }
  }
}

}  // namespace qf::kernels
