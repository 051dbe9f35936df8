// CPU checks of the forward_ops references (kernels/forward/forward_ops_ref.cpp): each *_ref
// against the model/ reference forward it stands for (bit-exact) or an independent double-precision
// loop (tolerance), plus the amax slot / NaN / BF16 rounding contract the GPU kernels share.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "forward_test_util.hpp"
#include "kernels/forward/forward_ops.cuh"
#include "model/config.hpp"
#include "model/forward_hyper_connections.hpp"
#include "model/forward_linear.hpp"
#include "model/forward_moe.hpp"
#include "numerics/host_device.hpp"
#include "ops/hyper_connection_mix.hpp"
#include "ops/moe_math.hpp"
#include "ops/rms_norm.hpp"
#include "ops/rope.hpp"

using namespace qf;
using namespace qf::kernels;

using numerics::bits_to_float;
using numerics::float_to_bits;
using qf::model::test::randn;
using qf::test::count_mismatches;

namespace {

bool near(double got, double want, double rel, double abs_tol) {
  return std::fabs(got - want) <= abs_tol + rel * std::fabs(want);
}

}  // namespace

TEST_CASE("rms_norm_ref: ops::rms_norm_rows_to and a double loop", "[forward_ops_ref]") {
  const int64_t n_rows = 5, n_cols = 37;
  const std::vector<float> x = randn(n_rows * n_cols, 1, 3.0f);
  const std::vector<float> w = randn(n_cols, 2);
  for (const bool weighted : {false, true}) {
    std::vector<float> out(x.size()), model_out(x.size());
    RmsNormParams p;
    p.x = x.data();
    p.out = out.data();
    p.weight = weighted ? w.data() : nullptr;
    p.n_rows = n_rows;
    p.n_cols = n_cols;
    p.eps = 1e-6f;
    rms_norm_ref(p);
    ops::rms_norm_rows_to(x.data(), model_out.data(), n_rows, n_cols, p.weight, p.eps);
    CHECK(count_mismatches(out, model_out, "rms_norm") == 0);
    for (int64_t r = 0; r < n_rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < n_cols; ++i) ss += double(x[r * n_cols + i]) * x[r * n_cols + i];
      const double inv = 1.0 / std::sqrt(ss / n_cols + 1e-6);
      for (int64_t i = 0; i < n_cols; ++i) {
        const double want = x[r * n_cols + i] * inv * (weighted ? w[i] : 1.0);
        CHECK(near(out[r * n_cols + i], want, 1e-6, 1e-7));
      }
    }
    // In place (out == x) gives the same bits.
    std::vector<float> in_place = x;
    p.x = in_place.data();
    p.out = in_place.data();
    rms_norm_ref(p);
    CHECK(count_mismatches(in_place, out, "rms_norm in place") == 0);
  }
}

TEST_CASE("rope_ref: ops::apply_rope_trailing_n at (r % period) * step", "[forward_ops_ref]") {
  ops::RopeParams rp;
  rp.rope_type = "yarn";
  rp.rope_theta = 10000.0;
  rp.factor = 4.0;
  rp.partial_rotary_factor = 0.25;
  rp.has_original_max_position_embeddings = true;
  rp.original_max_position_embeddings = 1024;
  const int64_t dim = 64, n_vecs = 3, n_rows = 12;
  const ops::RopeTable table = ops::make_rope_table(rp, dim, 4096);
  REQUIRE(table.rope_dim == 16);
  REQUIRE(table.attention_scaling != 1.0f);
  const std::vector<float> x = randn(n_rows * n_vecs * dim, 3);
  for (const bool inverse : {false, true}) {
    const int64_t period = 5, step = 4;
    std::vector<float> got = x, want = x;
    RopeParams p;
    p.x = got.data();
    p.n_rows = n_rows;
    p.n_vecs = n_vecs;
    p.dim = dim;
    p.inv_freq = table.inv_freq.data();
    p.rope_dim = table.rope_dim;
    p.attention_scaling = table.attention_scaling;
    p.period = period;
    p.position_step = step;
    p.inverse = inverse;
    rope_ref(p);
    for (int64_t r = 0; r < n_rows; ++r) {
      ops::apply_rope_trailing_n(want.data() + r * n_vecs * dim, n_vecs, dim, table,
                                 (r % period) * step, inverse);
    }
    CHECK(count_mismatches(got, want, "rope") == 0);
    // Independent double check of one row/vector: nope channels untouched, pairs rotated.
    const int64_t r = 7, v = 2, pos = (r % period) * step;
    const float* x0 = x.data() + (r * n_vecs + v) * dim;
    const float* y0 = got.data() + (r * n_vecs + v) * dim;
    for (int64_t i = 0; i < dim - table.rope_dim; ++i) CHECK(y0[i] == x0[i]);
    for (int64_t i = 0; i < table.rope_dim / 2; ++i) {
      const double a = double(table.inv_freq[i]) * pos, sc = table.attention_scaling;
      const double c = std::cos(a) * sc, s = (inverse ? -1 : 1) * std::sin(a) * sc;
      const double a0 = x0[dim - table.rope_dim + 2 * i], a1 = x0[dim - table.rope_dim + 2 * i + 1];
      CHECK(near(y0[dim - table.rope_dim + 2 * i], a0 * c - a1 * s, 1e-4, 1e-5));
      CHECK(near(y0[dim - table.rope_dim + 2 * i + 1], a1 * c + a0 * s, 1e-4, 1e-5));
    }
  }
}

TEST_CASE("amax_cast_ref: slots, negative slots, NaN wins, initial values kept",
          "[forward_ops_ref]") {
  const int64_t n_rows = 6, n_cols = 5;
  std::vector<float> x = randn(n_rows * n_cols, 4);
  x[0 * n_cols + 2] = -7.5f;  // row 0 -> slot 1
  x[1 * n_cols + 4] = 3.0f;   // row 1 -> slot 0 (initial 4.0 stays)
  x[3 * n_cols + 1] = std::numeric_limits<float>::quiet_NaN();   // row 3 -> slot -1: ignored
  x[4 * n_cols + 0] = -std::numeric_limits<float>::infinity();   // row 4 -> slot 2
  x[5 * n_cols + 3] = -std::numeric_limits<float>::quiet_NaN();  // row 5 -> slot 2: NaN wins
  const std::vector<int32_t> slots = {1, 0, 1, -1, 2, 2};
  std::vector<uint32_t> amax = {float_to_bits(4.0f), 0, 0, float_to_bits(1.0f)};
  AmaxCastParams p;
  p.x = x.data();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.row_slot = slots.data();
  p.amax_bits = amax.data();
  amax_cast_ref(p);
  auto row_amax = [&](int64_t r) {
    float m = 0;
    for (int64_t i = 0; i < n_cols; ++i) m = std::max(m, std::fabs(x[r * n_cols + i]));
    return m;
  };
  CHECK(bits_to_float(amax[0]) == std::max(4.0f, row_amax(1)));
  CHECK(bits_to_float(amax[1]) == std::max(row_amax(0), row_amax(2)));
  CHECK(bits_to_float(amax[1]) >= 7.5f);
  CHECK(std::isnan(bits_to_float(amax[2])));
  CHECK(amax[2] > float_to_bits(std::numeric_limits<float>::infinity()));
  CHECK(amax[3] == float_to_bits(1.0f));  // no row maps to slot 3

  // Null row_slot: every row to slot 0 (row 3's NaN now counts).
  std::vector<uint32_t> one = {0};
  p.row_slot = nullptr;
  p.amax_bits = one.data();
  amax_cast_ref(p);
  CHECK(std::isnan(bits_to_float(one[0])));
}

TEST_CASE("amax_cast_ref: BF16 copy rounds to nearest even, NaN -> 0x7FC0", "[forward_ops_ref]") {
  const std::vector<uint32_t> in = {
      0x3F800000u,  // 1.0
      0x3F808000u,  // tie, even below -> 0x3F80
      0x3F818000u,  // tie, odd below -> 0x3F82
      0x3F808001u,  // above tie -> 0x3F81
      0xBF807FFFu,  // below tie (negative) -> 0xBF80
      0x7F7FFFFFu,  // FLT_MAX rounds to +Inf
      0x7F800000u,  // +Inf
      0xFF800000u,  // -Inf
      0x7FC00001u,  // NaN with payload -> canonical
      0xFFA00000u,  // negative signalling NaN -> canonical
      0x80000000u,  // -0
      0x00000001u,  // smallest subnormal -> +0
  };
  const std::vector<uint16_t> want = {0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xBF80, 0x7F80,
                                      0x7F80, 0xFF80, 0x7FC0, 0x7FC0, 0x8000, 0x0000};
  std::vector<float> x(in.size());
  for (size_t i = 0; i < in.size(); ++i) x[i] = bits_to_float(in[i]);
  std::vector<uint16_t> out(in.size(), 0xDEAD);
  AmaxCastParams p;
  p.x = x.data();
  p.n_rows = 3;
  p.n_cols = 4;
  p.out_bf16 = out.data();
  amax_cast_ref(p);  // no amax_bits: copy only
  CHECK(out == want);
}

TEST_CASE("swiglu_ref: ops::swiglu_clamped per row, outputs and amax", "[forward_ops_ref]") {
  const int64_t n_rows = 4, inter = 9;
  const float limit = 2.0f;
  std::vector<float> gate_up = randn(n_rows * 2 * inter, 5, 3.0f);
  gate_up[1 * 2 * inter + 3] = std::numeric_limits<float>::quiet_NaN();  // gate NaN, row 1
  const std::vector<int32_t> slots = {0, -1, 1, 0};
  std::vector<float> out(n_rows * inter);
  std::vector<uint16_t> out_bf16(n_rows * inter);
  std::vector<uint32_t> amax(2, 0);
  SwigluParams p;
  p.gate_up = gate_up.data();
  p.n_rows = n_rows;
  p.inter = inter;
  p.limit = limit;
  p.out = out.data();
  p.out_bf16 = out_bf16.data();
  p.row_slot = slots.data();
  p.amax_bits = amax.data();
  swiglu_ref(p);
  std::vector<float> slot_max(2, 0.0f);
  for (int64_t r = 0; r < n_rows; ++r) {
    std::vector<float> g(gate_up.begin() + r * 2 * inter, gate_up.begin() + r * 2 * inter + inter);
    const float* u = gate_up.data() + r * 2 * inter + inter;
    ops::swiglu_clamped(g.data(), u, inter, limit);
    for (int64_t i = 0; i < inter; ++i) {
      const float h = out[r * inter + i];
      CHECK(float_to_bits(h) == float_to_bits(g[i]));
      // Independent: silu(min(g, limit)) * clamp(u).
      const double gi = std::min<double>(gate_up[r * 2 * inter + i], limit);
      const double ui = std::min<double>(std::max<double>(u[i], -limit), limit);
      const double want = gi / (1.0 + std::exp(-gi)) * ui;
      if (std::isnan(gate_up[r * 2 * inter + i])) {
        CHECK(std::isnan(h));
        CHECK(out_bf16[r * inter + i] == 0x7FC0);
      } else {
        CHECK(near(h, want, 1e-5, 1e-6));
        CHECK(std::fabs(h) <= limit * limit);
      }
      if (slots[r] >= 0 && !std::isnan(h)) {
        slot_max[slots[r]] = std::max(slot_max[slots[r]], std::fabs(h));
      }
    }
  }
  CHECK(bits_to_float(amax[0]) == slot_max[0]);
  CHECK(bits_to_float(amax[1]) == slot_max[1]);  // row 1 (NaN) had slot -1: not observed
}

TEST_CASE("hc_pre_ref from the model's mixes equals model::hc_pre", "[forward_ops_ref]") {
  const int64_t hc = 4, dim = 24, n_tokens = 7;
  model::ModelConfig c;
  c.hc_mult = hc;
  c.hidden_size = dim;
  c.hc_sinkhorn_iters = GENERATE(1, 20);
  c.hc_eps = 1e-6;
  c.rms_norm_eps = 1e-6;
  model::HyperConnectionWeights w;
  w.fn.n_rows = (2 + hc) * hc;
  w.fn.n_cols = hc * dim;
  w.fn.data = randn(w.fn.n_rows * w.fn.n_cols, 6, 0.05f);
  w.base = randn((2 + hc) * hc, 7, 0.5f);
  w.scale = {0.7f, 1.3f, 2.0f};
  const std::vector<float> hidden = randn(n_tokens * hc * dim, 8);

  ops::HcMix mix;
  std::vector<float> collapsed;
  model::hc_pre(c, w, hidden.data(), n_tokens, &mix, &collapsed);

  // The mixes GEMM as model/ does it: unweighted RMSNorm of the flattened streams, then fn^T.
  std::vector<float> flat = hidden;
  ops::rms_norm_rows(flat.data(), n_tokens, hc * dim, nullptr, static_cast<float>(c.rms_norm_eps));
  std::vector<float> mixes(n_tokens * w.fn.n_rows);
  model::matmul_ref(flat.data(), n_tokens, w.fn, mixes.data());

  std::vector<float> pre(n_tokens * hc), post(n_tokens * hc), comb(n_tokens * hc * hc),
      col(n_tokens * dim);
  HcPreParams p;
  p.mixes = mixes.data();
  p.hidden = hidden.data();
  p.base = w.base.data();
  p.scale = w.scale.data();
  p.n_tokens = n_tokens;
  p.hc = hc;
  p.dim = dim;
  p.sinkhorn_iters = c.hc_sinkhorn_iters;
  p.hc_eps = static_cast<float>(c.hc_eps);
  p.pre = pre.data();
  p.post = post.data();
  p.comb = comb.data();
  p.collapsed = col.data();
  hc_pre_ref(p);
  CHECK(count_mismatches(pre, mix.pre, "hc_pre pre") == 0);
  CHECK(count_mismatches(post, mix.post, "hc_pre post") == 0);
  CHECK(count_mismatches(comb, mix.comb, "hc_pre comb") == 0);
  CHECK(count_mismatches(col, collapsed, "hc_pre collapsed") == 0);

  // Doubly stochastic after enough iterations; pre in (hc_eps, 1 + hc_eps), post in (0, 2).
  if (c.hc_sinkhorn_iters == 20) {
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t i = 0; i < hc; ++i) {
        double row = 0, column = 0;
        for (int64_t j = 0; j < hc; ++j) {
          row += comb[t * hc * hc + i * hc + j];
          column += comb[t * hc * hc + j * hc + i];
        }
        CHECK(near(row, 1.0, 1e-3, 0));
        CHECK(near(column, 1.0, 1e-4, 0));
      }
    }
  }
  for (int64_t k = 0; k < n_tokens * hc; ++k) {
    CHECK((pre[k] > 0.0f && pre[k] < 1.0f + 2e-6f));
    CHECK((post[k] > 0.0f && post[k] < 2.0f));
  }
}

TEST_CASE("hc_post_ref equals ops::hc_post and a naive loop", "[forward_ops_ref]") {
  const int64_t hc = 4, dim = 10, n_tokens = 3;
  const std::vector<float> post = randn(n_tokens * hc, 9);
  const std::vector<float> comb = randn(n_tokens * hc * hc, 10);
  const std::vector<float> block_out = randn(n_tokens * dim, 11);
  const std::vector<float> hidden = randn(n_tokens * hc * dim, 12);
  std::vector<float> got = hidden, want = hidden;
  HcPostParams p;
  p.post = post.data();
  p.comb = comb.data();
  p.block_out = block_out.data();
  p.hidden = got.data();
  p.n_tokens = n_tokens;
  p.hc = hc;
  p.dim = dim;
  hc_post_ref(p);
  ops::HcMix mix;
  mix.n_tokens = n_tokens;
  mix.hc = hc;
  mix.post = post;
  mix.comb = comb;
  ops::hc_post(mix, block_out.data(), dim, want.data());
  CHECK(count_mismatches(got, want, "hc_post") == 0);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t k = 0; k < hc; ++k) {
      for (int64_t d = 0; d < dim; ++d) {
        double s = double(post[t * hc + k]) * block_out[t * dim + d];
        for (int64_t j = 0; j < hc; ++j) {
          s += double(comb[t * hc * hc + j * hc + k]) * hidden[(t * hc + j) * dim + d];
        }
        CHECK(near(got[(t * hc + k) * dim + d], s, 1e-5, 1e-5));
      }
    }
  }
}
