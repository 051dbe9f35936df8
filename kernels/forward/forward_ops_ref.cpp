// CPU references of the forward's elementwise / per-row kernels (forward_ops.cuh). Each one calls
// the model/ reference forward where it has the op (RMSNorm, RoPE, SwiGLU, Sinkhorn, hc_post);
// hc_pre restarts model::hc_pre after its mixes GEMM with the same arithmetic. Host pointers.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.hpp"
#include "kernels/forward/forward_ops.cuh"
#include "numerics/bf16.hpp"
#include "ops/hyper_connection_mix.hpp"
#include "ops/moe_math.hpp"
#include "ops/rms_norm.hpp"
#include "ops/rope.hpp"

namespace qf::kernels {
namespace {

// BF16 of the next GEMM's input: round-to-nearest-even, every NaN as torch's canonical 0x7FC0.
uint16_t to_bf16_canonical(float x) {
  const uint32_t bits = numerics::float_to_bits(x);
  return numerics::is_nan_bits(bits) ? uint16_t{0x7FC0} : numerics::float_to_bf16(x);
}

// |x| bits; a max over them is max |x| with any NaN winning (see forward_ops.cuh).
uint32_t abs_bits(float x) { return numerics::float_to_bits(x) & 0x7FFFFFFFu; }

// Observes one finished row: amax into its slot, BF16 copy.
void observe_row(const float* row, int64_t n_cols, int32_t slot, uint32_t* amax_bits,
                 uint16_t* out_bf16_row) {
  if (amax_bits != nullptr && slot >= 0) {
    uint32_t m = amax_bits[slot];
    for (int64_t i = 0; i < n_cols; ++i) m = std::max(m, abs_bits(row[i]));
    amax_bits[slot] = m;
  }
  if (out_bf16_row != nullptr) {
    for (int64_t i = 0; i < n_cols; ++i) out_bf16_row[i] = to_bf16_canonical(row[i]);
  }
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }  // as model/ hyper-connections

}  // namespace

void rms_norm_ref(const RmsNormParams& p) {
  ops::rms_norm_rows_to(p.x, p.out, p.n_rows, p.n_cols, p.weight, p.eps);
}

void rope_ref(const RopeParams& p) {
  QF_CHECK(p.rope_dim > 0 && p.rope_dim % 2 == 0 && p.rope_dim <= p.dim, "rope_dim", p.rope_dim,
           "dim", p.dim);
  QF_CHECK(p.period > 0, "rope period", p.period);
  ops::RopeTable table;
  table.rope_dim = p.rope_dim;
  table.inv_freq.assign(p.inv_freq, p.inv_freq + p.rope_dim / 2);
  table.attention_scaling = p.attention_scaling;
  std::vector<float> c(p.rope_dim / 2), s(p.rope_dim / 2);
  for (int64_t r = 0; r < p.n_rows; ++r) {
    ops::rope_cos_sin(table, (r % p.period) * p.position_step, c.data(), s.data());
    for (int64_t v = 0; v < p.n_vecs; ++v) {
      ops::apply_rope_trailing(p.x + (r * p.n_vecs + v) * p.dim, p.dim, p.rope_dim, c.data(),
                               s.data(), p.inverse);
    }
  }
}

void amax_cast_ref(const AmaxCastParams& p) {
  for (int64_t r = 0; r < p.n_rows; ++r) {
    const int32_t slot = p.row_slot != nullptr ? p.row_slot[r] : 0;
    observe_row(p.x + r * p.n_cols, p.n_cols, slot, p.amax_bits,
                p.out_bf16 != nullptr ? p.out_bf16 + r * p.n_cols : nullptr);
  }
}

void swiglu_ref(const SwigluParams& p) {
  std::vector<float> h(p.inter);
  for (int64_t r = 0; r < p.n_rows; ++r) {
    const float* gate = p.gate_up + r * 2 * p.inter;
    std::copy(gate, gate + p.inter, h.begin());
    ops::swiglu_clamped(h.data(), gate + p.inter, p.inter, p.limit);
    if (p.out != nullptr) std::copy(h.begin(), h.end(), p.out + r * p.inter);
    const int32_t slot = p.row_slot != nullptr ? p.row_slot[r] : 0;
    observe_row(h.data(), p.inter, slot, p.amax_bits,
                p.out_bf16 != nullptr ? p.out_bf16 + r * p.inter : nullptr);
  }
}

// model::hc_pre from `mixes` on (same expressions, same summation order). pre is required;
// post, comb and collapsed may be null (not written).
void hc_pre_ref(const HcPreParams& p) {
  const int64_t hc = p.hc, dim = p.dim;
  QF_CHECK(p.pre != nullptr, "hc_pre needs pre");
  const float pre_scale = p.scale[0], post_scale = p.scale[1], comb_scale = p.scale[2];
  std::vector<float> logits(hc * hc), comb(hc * hc);
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    const float* m = p.mixes + t * (2 + hc) * hc;
    float* pre = p.pre + t * hc;
    for (int64_t h = 0; h < hc; ++h) {
      pre[h] = sigmoid(m[h] * pre_scale + p.base[h]) + p.hc_eps;
      if (p.post != nullptr)
        p.post[t * hc + h] = 2.0f * sigmoid(m[hc + h] * post_scale + p.base[hc + h]);
    }
    if (p.comb != nullptr) {
      for (int64_t k = 0; k < hc * hc; ++k)
        logits[k] = m[2 * hc + k] * comb_scale + p.base[2 * hc + k];
      ops::sinkhorn_comb(logits.data(), hc, p.sinkhorn_iters, p.hc_eps, comb.data());
      std::copy(comb.begin(), comb.end(), p.comb + t * hc * hc);
    }
    if (p.collapsed != nullptr) {
      const float* x = p.hidden + t * hc * dim;
      float* out = p.collapsed + t * dim;
      for (int64_t d = 0; d < dim; ++d) {
        float s = 0.0f;
        for (int64_t h = 0; h < hc; ++h) s += pre[h] * x[h * dim + d];
        out[d] = s;
      }
    }
  }
}

void hc_post_ref(const HcPostParams& p) {
  ops::HcMix mix;
  mix.n_tokens = p.n_tokens;
  mix.hc = p.hc;
  mix.post.assign(p.post, p.post + p.n_tokens * p.hc);
  mix.comb.assign(p.comb, p.comb + p.n_tokens * p.hc * p.hc);
  ops::hc_post(mix, p.block_out, p.dim, p.hidden);
}

}  // namespace qf::kernels
