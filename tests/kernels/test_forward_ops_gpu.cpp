// GPU vs CPU reference for the forward's elementwise / per-row kernels (kernels/forward/
// forward_ops.cuh): RMSNorm, RoPE, amax + BF16 cast, SwiGLU, mHC pre and post, over odd and
// V4-Flash-like shapes (reduced token counts), unaligned (scalar) paths, NaN and row slots.
// Named _gpu because tests/unit/test_forward_ops.cpp already owns the target test_forward_ops.
// Tolerances: only expf (CUDA 2 ulp vs glibc) and the RMS double-sum order differ from the CPU,
// every float mul/add rounds the same way, so float outputs agree to a few ulp (kRel/kAbs);
// amax bits and BF16 words that do not depend on expf are bit-exact. Needs a GPU ([gpu]).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "gpu_test_util.hpp"
#include "kernels/forward/forward_ops.cuh"
#include "numerics/bf16.hpp"
#include "numerics/host_device.hpp"
#include "ops/rope.hpp"

using namespace qf;
using numerics::bits_to_float;
using numerics::float_to_bits;
using qf::test::count_mismatches;
using qf::test::download;
using qf::test::Mismatches;
using qf::test::to_device;
using qf::test::Tolerance;
using qf::test::upload;
using qf::test::within;
using namespace qf::kernels;

namespace {

constexpr double kRel = 1e-6;  // float outputs: relative ...
constexpr double kAbs = 1e-7;  // ... plus absolute (values near 0, subnormals)
constexpr Tolerance kTol{kRel, kAbs};

uint16_t bf16_canonical(float x) {
  return std::isnan(x) ? uint16_t{0x7FC0} : numerics::float_to_bf16(x);
}

// Normal data with heavy-tailed outliers; `specials` mixes in Inf, -0, subnormals and exact
// BF16 ties (no NaN: tests inject NaN where they want it).
std::vector<float> random_floats(size_t n, std::mt19937& rng, float std = 1.0f,
                                 bool specials = false) {
  std::normal_distribution<float> normal(0.0f, std);
  std::uniform_int_distribution<int> pick(0, 999);
  std::vector<float> v(n);
  for (float& x : v) {
    x = normal(rng);
    const int k = pick(rng);
    if (k < 5) x *= 100.0f;  // outliers
    if (!specials) continue;
    if (k == 5) x = std::numeric_limits<float>::infinity();
    if (k == 6) x = -0.0f;
    if (k == 7) x = 1e-40f;                                                     // subnormal
    if (k == 8) x = bits_to_float((float_to_bits(x) & 0xFFFF0000u) | 0x8000u);  // BF16 tie
  }
  return v;
}

std::vector<int32_t> random_slots(int64_t n_rows, int mode, int n_slots, std::mt19937& rng) {
  std::vector<int32_t> s(n_rows);
  std::uniform_int_distribution<int> slot(-1, n_slots - 1);
  for (int64_t r = 0; r < n_rows; ++r) {
    // mode 1: scattered slots with skipped rows; mode 2: contiguous groups (MoE-sorted rows).
    s[r] = mode == 1 ? slot(rng) : static_cast<int32_t>(r * n_slots / std::max<int64_t>(1, n_rows));
  }
  return s;
}

struct Shape {
  int64_t n_rows, n_cols;
};

}  // namespace

// ---- RMSNorm ------------------------------------------------------------------------------------
TEST_CASE("forward_ops gpu: rms_norm matches reference", "[gpu][forward_ops]") {
  const Shape shape = GENERATE(Shape{1, 1}, Shape{1, 7}, Shape{3, 13}, Shape{2, 4}, Shape{37, 512},
                               Shape{5, 1023}, Shape{64, 2048}, Shape{33, 4096}, Shape{4, 16384},
                               Shape{257, 1024}, Shape{600, 64}, Shape{9, 1500}, Shape{3, 6000});
  const bool weighted = GENERATE(false, true);
  const bool in_place = GENERATE(false, true);
  const bool unaligned = GENERATE(false, true);  // +1 float: scalar path
  const int64_t n_rows = shape.n_rows, n_cols = shape.n_cols;
  CAPTURE(n_rows, n_cols, weighted, in_place, unaligned);
  std::mt19937 rng(static_cast<uint32_t>(n_rows * 131 + n_cols));
  const size_t n = static_cast<size_t>(n_rows * n_cols), off = unaligned ? 1 : 0;
  const std::vector<float> x = random_floats(n, rng, 2.0f);
  const std::vector<float> w = random_floats(n_cols, rng);

  std::vector<float> want(n);
  RmsNormParams p;
  p.x = x.data();
  p.out = want.data();
  p.weight = weighted ? w.data() : nullptr;
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.eps = 1e-6f;
  rms_norm_ref(p);

  DeviceBuffer<float> d_x(n + 1), d_out(n + 1), d_w(n_cols + 1);
  upload(d_x, x, off);
  upload(d_w, w, off);
  p.x = d_x.get() + off;
  p.out = in_place ? d_x.get() + off : d_out.get() + off;
  p.weight = weighted ? d_w.get() + off : nullptr;
  launch_rms_norm(p, nullptr);
  const std::vector<float> got = download(in_place ? d_x : d_out, n, off);
  CHECK(count_mismatches(got, want, "rms_norm", kTol) == 0);
}

// ---- RoPE ---------------------------------------------------------------------------------------
struct RopeCase {
  int64_t n_rows, n_vecs, dim, rope_dim, period, step;
};

TEST_CASE("forward_ops gpu: rope matches reference", "[gpu][forward_ops]") {
  const RopeCase c = GENERATE(RopeCase{1, 1, 2, 2, 1, 1}, RopeCase{7, 3, 10, 4, 7, 1},
                              RopeCase{64, 64, 512, 64, 64, 1},  // q: 64 heads x 512
                              RopeCase{130, 1, 512, 64, 65, 1},  // kv: 2 sequences
                              RopeCase{40, 1, 512, 64, 10, 4},   // CSA entries (rate 4)
                              RopeCase{9, 1, 512, 64, 9, 128},   // HCA entries (rate 128)
                              RopeCase{32, 64, 128, 64, 32, 1},  // indexer 64 x 128
                              RopeCase{300, 4, 66, 16, 100, 3}, RopeCase{5, 2, 9, 6, 5, 1});
  const bool inverse = GENERATE(false, true);
  const bool unaligned = GENERATE(false, true);
  CAPTURE(c.n_rows, c.n_vecs, c.dim, c.rope_dim, c.period, c.step, inverse, unaligned);
  // YaRN table (attention_scaling != 1) as the model builds it.
  ops::RopeParams rp;
  rp.rope_type = "yarn";
  rp.rope_theta = 10000.0;
  rp.factor = 16.0;
  rp.has_original_max_position_embeddings = true;
  rp.original_max_position_embeddings = 4096;
  const ops::RopeTable table = ops::make_rope_table(rp, c.rope_dim, 65536);
  REQUIRE(table.rope_dim == c.rope_dim);

  std::mt19937 rng(static_cast<uint32_t>(c.n_rows * 17 + c.n_vecs * 5 + c.dim));
  const size_t n = static_cast<size_t>(c.n_rows * c.n_vecs * c.dim), off = unaligned ? 1 : 0;
  const std::vector<float> x = random_floats(n, rng);
  std::vector<float> want = x;
  RopeParams p;
  p.x = want.data();
  p.n_rows = c.n_rows;
  p.n_vecs = c.n_vecs;
  p.dim = c.dim;
  p.inv_freq = table.inv_freq.data();
  p.rope_dim = c.rope_dim;
  p.attention_scaling = table.attention_scaling;
  p.period = c.period;
  p.position_step = c.step;
  p.inverse = inverse;
  rope_ref(p);

  DeviceBuffer<float> d_x(n + 1), d_freq(table.inv_freq.size());
  upload(d_x, x, off);
  upload(d_freq, table.inv_freq);
  p.x = d_x.get() + off;
  p.inv_freq = d_freq.get();
  launch_rope(p, nullptr);
  const std::vector<float> got = download(d_x, n, off);
  CHECK(count_mismatches(got, want, "rope", kTol) == 0);
}

// ---- amax + BF16 cast ---------------------------------------------------------------------------
TEST_CASE("forward_ops gpu: amax_cast is bit-exact vs reference", "[gpu][forward_ops]") {
  const Shape shape =
      GENERATE(Shape{1, 1}, Shape{1, 5}, Shape{3, 7}, Shape{17, 4096}, Shape{100, 1000},
               Shape{64, 2048}, Shape{5, 16384}, Shape{300, 512}, Shape{33, 1023});
  const int slot_mode = GENERATE(0, 1, 2);  // null row_slot / scattered with -1 / contiguous
  const bool with_bf16 = GENERATE(false, true);
  const bool with_nan = GENERATE(false, true);
  const bool unaligned = GENERATE(false, true);
  const int64_t n_rows = shape.n_rows, n_cols = shape.n_cols;
  CAPTURE(n_rows, n_cols, slot_mode, with_bf16, with_nan, unaligned);
  std::mt19937 rng(static_cast<uint32_t>(n_rows * 31 + n_cols * 7 + slot_mode));
  const size_t n = static_cast<size_t>(n_rows * n_cols), off = unaligned ? 1 : 0;
  std::vector<float> x = random_floats(n, rng, 1.0f, /*specials=*/true);
  if (with_nan) {  // a few NaNs with different payloads and signs
    std::uniform_int_distribution<size_t> at(0, n - 1);
    x[at(rng)] = std::numeric_limits<float>::quiet_NaN();
    x[at(rng)] = bits_to_float(0xFFC12345u);
  }
  const int n_slots = 5;
  const std::vector<int32_t> slots = random_slots(n_rows, slot_mode, n_slots, rng);
  // Pre-existing maxima: some slots already hold a value, one holds a large one.
  const std::vector<uint32_t> amax0 = {0, float_to_bits(0.25f), float_to_bits(1e6f), 0,
                                       float_to_bits(3.0f)};

  std::vector<uint32_t> want_amax = amax0;
  std::vector<uint16_t> want_bf16(with_bf16 ? n : 0);
  AmaxCastParams p;
  p.x = x.data();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.row_slot = slot_mode ? slots.data() : nullptr;
  p.amax_bits = want_amax.data();
  p.out_bf16 = with_bf16 ? want_bf16.data() : nullptr;
  amax_cast_ref(p);

  DeviceBuffer<float> d_x(n + 1);
  DeviceBuffer<int32_t> d_slots(n_rows);
  DeviceBuffer<uint32_t> d_amax(n_slots);
  DeviceBuffer<uint16_t> d_bf16(n + 1);
  upload(d_x, x, off);
  upload(d_slots, slots);
  upload(d_amax, amax0);
  p.x = d_x.get() + off;
  p.row_slot = slot_mode ? d_slots.get() : nullptr;
  p.amax_bits = d_amax.get();
  p.out_bf16 = with_bf16 ? d_bf16.get() + off : nullptr;
  launch_amax_cast(p, nullptr);
  const std::vector<uint32_t> got_amax = download(d_amax, n_slots);
  CHECK(count_mismatches(got_amax, want_amax, "amax bits") == 0);
  if (with_nan && slot_mode == 0)
    CHECK(got_amax[0] > float_to_bits(std::numeric_limits<float>::infinity()));
  if (with_bf16) {
    const std::vector<uint16_t> got_bf16 = download(d_bf16, n, off);
    CHECK(count_mismatches(got_bf16, want_bf16, "bf16") == 0);
  }
}

TEST_CASE("forward_ops gpu: one NaN in a large tensor reaches its slot", "[gpu][forward_ops]") {
  const int64_t n_rows = 1024, n_cols = 4096;
  const size_t n = static_cast<size_t>(n_rows * n_cols);
  std::mt19937 rng(99);
  std::vector<float> x = random_floats(n, rng);
  const size_t nan_at = 779 * n_cols + 1234;  // row 779: slot 1
  x[nan_at] = -std::numeric_limits<float>::quiet_NaN();
  std::vector<int32_t> slots(n_rows);
  for (int64_t r = 0; r < n_rows; ++r) slots[r] = static_cast<int32_t>(r % 3) - 1;  // -1, 0, 1
  std::vector<uint32_t> want(2, 0);
  AmaxCastParams p;
  p.x = x.data();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.row_slot = slots.data();
  p.amax_bits = want.data();
  amax_cast_ref(p);
  REQUIRE(std::isnan(bits_to_float(want[1])));
  REQUIRE(!std::isnan(bits_to_float(want[0])));

  DeviceBuffer<float> d_x(n);
  DeviceBuffer<int32_t> d_slots(n_rows);
  DeviceBuffer<uint32_t> d_amax(2);
  upload(d_x, x);
  upload(d_slots, slots);
  QF_CUDA_CHECK(cudaMemset(d_amax.get(), 0, 2 * sizeof(uint32_t)), "test memset");
  p.x = d_x.get();
  p.row_slot = d_slots.get();
  p.amax_bits = d_amax.get();
  launch_amax_cast(p, nullptr);
  const std::vector<uint32_t> got = download(d_amax, 2);
  CHECK(got == want);
}

// ---- SwiGLU -------------------------------------------------------------------------------------
TEST_CASE("forward_ops gpu: swiglu matches reference", "[gpu][forward_ops]") {
  const Shape shape = GENERATE(Shape{1, 1}, Shape{3, 5}, Shape{20, 96}, Shape{64, 2048},
                               Shape{300, 2048}, Shape{7, 1023}, Shape{9, 4096});
  const float limit = GENERATE(10.0f, 1.0f);
  const int outputs = GENERATE(0, 1, 2);  // f32+bf16+amax / bf16+amax only / f32 only
  const int slot_mode = GENERATE(0, 1, 2);
  const bool with_nan = GENERATE(false, true);
  const bool unaligned = GENERATE(false, true);
  const int64_t n_rows = shape.n_rows, inter = shape.n_cols;
  CAPTURE(n_rows, inter, limit, outputs, slot_mode, with_nan, unaligned);
  std::mt19937 rng(static_cast<uint32_t>(n_rows * 13 + inter * 3 + outputs));
  const size_t n_in = static_cast<size_t>(n_rows * 2 * inter), n = n_in / 2;
  const size_t off = unaligned ? 1 : 0;
  std::vector<float> gate_up = random_floats(n_in, rng, 6.0f);  // well past the clamp
  if (with_nan) {
    std::uniform_int_distribution<size_t> at(0, n_in - 1);
    gate_up[at(rng)] = std::numeric_limits<float>::quiet_NaN();
    gate_up[at(rng)] = -std::numeric_limits<float>::quiet_NaN();
  }
  const int n_slots = 4;
  const std::vector<int32_t> slots = random_slots(n_rows, slot_mode, n_slots, rng);
  const bool want_f32 = outputs != 1, want_bf16 = outputs != 2, want_amax = outputs != 2;

  std::vector<float> ref_out(n);
  std::vector<uint16_t> ref_bf16(n);
  std::vector<uint32_t> ref_amax(n_slots, 0);
  SwigluParams p;
  p.gate_up = gate_up.data();
  p.n_rows = n_rows;
  p.inter = inter;
  p.limit = limit;
  p.out = ref_out.data();  // the reference always writes everything; compare what the GPU wrote
  p.out_bf16 = ref_bf16.data();
  p.row_slot = slot_mode ? slots.data() : nullptr;
  p.amax_bits = ref_amax.data();
  swiglu_ref(p);

  DeviceBuffer<float> d_in(n_in + 1), d_out(n + 1);
  DeviceBuffer<uint16_t> d_bf16(n + 1);
  DeviceBuffer<int32_t> d_slots(n_rows);
  DeviceBuffer<uint32_t> d_amax(n_slots);
  upload(d_in, gate_up, off);
  upload(d_slots, slots);
  QF_CUDA_CHECK(cudaMemset(d_amax.get(), 0, n_slots * sizeof(uint32_t)), "test memset");
  p.gate_up = d_in.get() + off;
  p.out = want_f32 ? d_out.get() + off : nullptr;
  p.out_bf16 = want_bf16 ? d_bf16.get() + off : nullptr;
  p.row_slot = slot_mode ? d_slots.get() : nullptr;
  p.amax_bits = want_amax ? d_amax.get() : nullptr;
  launch_swiglu(p, nullptr);
  std::vector<float> got_out;
  if (want_f32) {
    got_out = download(d_out, n, off);
    CHECK(count_mismatches(got_out, ref_out, "swiglu", kTol) == 0);
  }
  if (want_bf16) {
    const std::vector<uint16_t> got_bf16 = download(d_bf16, n, off);
    // The GPU's own float rounds to its BF16 exactly; vs the CPU (expf may differ by an ulp or
    // two) a BF16 word may sit one step away when the float lands on a rounding boundary.
    Mismatches self("bf16 vs the gpu's float"), far("bf16 vs ref");
    for (size_t i = 0; i < n; ++i) {
      if (want_f32) self.expect(i, got_bf16[i], bf16_canonical(got_out[i]));
      const uint16_t a = got_bf16[i], b = ref_bf16[i];
      const bool ok = a == b || ((a & 0x8000) == (b & 0x8000) && a != 0x7FC0 && b != 0x7FC0 &&
                                 std::abs(int(a) - int(b)) <= 1);
      far.check(ok, i, a, b);
    }
    CHECK(self.count() == 0);
    CHECK(far.count() == 0);
  }
  if (want_amax) {
    const std::vector<uint32_t> got_amax = download(d_amax, n_slots);
    for (int s = 0; s < n_slots; ++s) {
      CAPTURE(s, got_amax[s], ref_amax[s]);
      CHECK(within(bits_to_float(got_amax[s]), bits_to_float(ref_amax[s]), kTol));
      CHECK((got_amax[s] == 0) == (ref_amax[s] == 0));
    }
  }
}

// ---- mHC pre / post -----------------------------------------------------------------------------
struct HcCase {
  int64_t n_tokens, hc, dim, iters;
};

TEST_CASE("forward_ops gpu: hc_pre matches reference", "[gpu][forward_ops]") {
  const HcCase c = GENERATE(HcCase{1, 4, 1, 20}, HcCase{5, 2, 7, 1}, HcCase{37, 4, 256, 20},
                            HcCase{64, 4, 4096, 20}, HcCase{16, 4, 4095, 20}, HcCase{9, 3, 64, 5},
                            HcCase{3, 8, 32, 20}, HcCase{300, 4, 64, 0});
  const float mix_std = GENERATE(0.3f, 2.0f);
  const bool unaligned = GENERATE(false, true);
  CAPTURE(c.n_tokens, c.hc, c.dim, c.iters, mix_std, unaligned);
  std::mt19937 rng(static_cast<uint32_t>(c.n_tokens * 7 + c.hc * 3 + c.dim));
  const int64_t n_mix = (2 + c.hc) * c.hc, hc = c.hc;
  const size_t n_hidden = static_cast<size_t>(c.n_tokens * hc * c.dim);
  const size_t off = unaligned ? 1 : 0;
  const std::vector<float> mixes = random_floats(c.n_tokens * n_mix, rng, mix_std);
  const std::vector<float> hidden = random_floats(n_hidden, rng);
  const std::vector<float> base = random_floats(n_mix, rng, 0.5f);
  const std::vector<float> scale = {0.8f, 1.1f, 1.7f};

  std::vector<float> pre(c.n_tokens * hc), post(c.n_tokens * hc), comb(c.n_tokens * hc * hc),
      collapsed(c.n_tokens * c.dim);
  HcPreParams p;
  p.mixes = mixes.data();
  p.hidden = hidden.data();
  p.base = base.data();
  p.scale = scale.data();
  p.n_tokens = c.n_tokens;
  p.hc = hc;
  p.dim = c.dim;
  p.sinkhorn_iters = c.iters;
  p.hc_eps = 1e-6f;
  p.pre = pre.data();
  p.post = post.data();
  p.comb = comb.data();
  p.collapsed = collapsed.data();
  hc_pre_ref(p);

  DeviceBuffer<float> d_mixes(mixes.size()), d_hidden(n_hidden + 1), d_base(n_mix), d_scale(3),
      d_pre(pre.size()), d_post(post.size()), d_comb(comb.size()),
      d_collapsed(collapsed.size() + 1);
  upload(d_mixes, mixes);
  upload(d_hidden, hidden, off);
  upload(d_base, base);
  upload(d_scale, scale);
  p.mixes = d_mixes.get();
  p.hidden = d_hidden.get() + off;
  p.base = d_base.get();
  p.scale = d_scale.get();
  p.pre = d_pre.get();
  p.post = d_post.get();
  p.comb = d_comb.get();
  p.collapsed = d_collapsed.get() + off;
  launch_hc_pre(p, nullptr);
  const std::vector<float> got_pre = download(d_pre, pre.size());
  const std::vector<float> got_post = download(d_post, post.size());
  const std::vector<float> got_comb = download(d_comb, comb.size());
  const std::vector<float> got_col = download(d_collapsed, collapsed.size(), off);
  CHECK(count_mismatches(got_pre, pre, "hc_pre pre", kTol) == 0);
  CHECK(count_mismatches(got_post, post, "hc_pre post", kTol) == 0);
  CHECK(count_mismatches(got_comb, comb, "hc_pre comb", kTol) == 0);
  // The collapse itself is exact: from the GPU's pre the CPU loop gives the same bits; against
  // the reference it moves by pre's ulp times sum_h |x|.
  Mismatches exact("collapsed vs the gpu's pre"), far("collapsed vs ref");
  for (int64_t t = 0; t < c.n_tokens; ++t) {
    for (int64_t d = 0; d < c.dim; ++d) {
      float s = 0.0f, mag = 0.0f;
      for (int64_t h = 0; h < hc; ++h) {
        const float xv = hidden[(t * hc + h) * c.dim + d];
        s += got_pre[t * hc + h] * xv;
        mag += std::fabs(xv);
      }
      const size_t i = static_cast<size_t>(t * c.dim + d);
      exact.expect(i, got_col[i], s);
      far.expect_close(i, got_col[i], collapsed[i], Tolerance{1e-6, 1e-6 * (1.0 + mag)});
    }
  }
  CHECK(exact.count() == 0);
  CHECK(far.count() == 0);
}

TEST_CASE("forward_ops gpu: hc_post matches reference", "[gpu][forward_ops]") {
  const HcCase c = GENERATE(HcCase{1, 4, 1, 0}, HcCase{5, 2, 7, 0}, HcCase{37, 4, 256, 0},
                            HcCase{64, 4, 4096, 0}, HcCase{16, 4, 4095, 0}, HcCase{3, 8, 32, 0},
                            HcCase{9, 3, 64, 0});
  const bool unaligned = GENERATE(false, true);
  CAPTURE(c.n_tokens, c.hc, c.dim, unaligned);
  std::mt19937 rng(static_cast<uint32_t>(c.n_tokens * 11 + c.hc + c.dim));
  const int64_t hc = c.hc;
  const size_t n_hidden = static_cast<size_t>(c.n_tokens * hc * c.dim);
  const size_t off = unaligned ? 1 : 0;
  std::uniform_real_distribution<float> unit(0.0f, 1.0f), two(0.0f, 2.0f);
  std::vector<float> post(c.n_tokens * hc), comb(c.n_tokens * hc * hc);
  for (float& v : post) v = two(rng);
  for (float& v : comb) v = unit(rng) / static_cast<float>(hc);
  const std::vector<float> block_out = random_floats(c.n_tokens * c.dim, rng);
  const std::vector<float> hidden = random_floats(n_hidden, rng);

  std::vector<float> want = hidden;
  HcPostParams p;
  p.post = post.data();
  p.comb = comb.data();
  p.block_out = block_out.data();
  p.hidden = want.data();
  p.n_tokens = c.n_tokens;
  p.hc = hc;
  p.dim = c.dim;
  hc_post_ref(p);

  DeviceBuffer<float> d_post(post.size()), d_comb(comb.size()), d_y(block_out.size() + 1),
      d_hidden(n_hidden + 1);
  upload(d_post, post);
  upload(d_comb, comb);
  upload(d_y, block_out, off);
  upload(d_hidden, hidden, off);
  p.post = d_post.get();
  p.comb = d_comb.get();
  p.block_out = d_y.get() + off;
  p.hidden = d_hidden.get() + off;
  launch_hc_post(p, nullptr);
  const std::vector<float> got = download(d_hidden, n_hidden, off);
  CHECK(count_mismatches(got, want, "hc_post", kTol) == 0);
}
