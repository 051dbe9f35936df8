// Lossless MXFP4 -> NVFP4 cast (kernels/nvfp4_quantize_ref.cpp mxfp4_to_nvfp4_ref and
// numerics/mxfp4_to_nvfp4.hpp): bit-preserved nibbles, exact scales, fallback, shared k_max.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "kernels/nvfp4_quantize.cuh"
#include "numerics/mxfp4_to_nvfp4.hpp"

using namespace qf;
using namespace qf::kernels;
using namespace qf::numerics;
using qf::test::Mismatches;

namespace {

struct Mxfp4 {
  int64_t n_rows = 0, n_cols = 0;
  std::vector<uint8_t> packed;  // [n_rows, n_cols/2]
  std::vector<uint8_t> e8m0;    // [n_rows, n_cols/32]
};

struct Cast {
  std::vector<uint8_t> packed, scale;
  float scale_2 = 0;
  uint64_t counts[kMxfp4CountSlots] = {};
};

uint32_t e8m0_max(const std::vector<uint8_t>& e8m0) {
  uint32_t m = 0;
  Mxfp4E8m0MaxParams p;
  p.e8m0 = e8m0.data();
  p.n_scales = static_cast<int64_t>(e8m0.size());
  p.e8m0_max = &m;
  mxfp4_e8m0_max_ref(p);
  return m;
}

Cast cast(const Mxfp4& w, const Mxfp4* pair = nullptr) {
  Cast c;
  c.packed.assign(w.packed.size(), 0xAA);
  c.scale.assign(w.e8m0.size() * 2, 0xAA);
  const uint32_t self_max = e8m0_max(w.e8m0);
  const uint32_t pair_max = pair ? e8m0_max(pair->e8m0) : 0;
  Mxfp4ToNvfp4Params p;
  p.packed = w.packed.data();
  p.e8m0 = w.e8m0.data();
  p.n_rows = w.n_rows;
  p.n_cols = w.n_cols;
  p.e8m0_max = &self_max;
  p.e8m0_max_pair = pair ? &pair_max : nullptr;
  p.out_packed = c.packed.data();
  p.out_scale = c.scale.data();
  p.out_scale_2 = &c.scale_2;
  p.counts = c.counts;
  mxfp4_to_nvfp4_ref(p);
  return c;
}

// Random nibbles (all 16 codes) and E8M0 bytes drawn from [lo, hi].
Mxfp4 random_mxfp4(int64_t n_rows, int64_t n_cols, int lo, int hi, uint32_t seed) {
  std::mt19937 rng(seed);
  Mxfp4 w;
  w.n_rows = n_rows;
  w.n_cols = n_cols;
  w.packed.resize(static_cast<size_t>(n_rows * n_cols / 2));
  w.e8m0.resize(static_cast<size_t>(n_rows * n_cols / 32));
  for (auto& b : w.packed) b = static_cast<uint8_t>(rng());
  for (auto& s : w.e8m0) s = static_cast<uint8_t>(lo + static_cast<int>(rng() % (hi - lo + 1)));
  return w;
}

uint8_t nibble(const std::vector<uint8_t>& packed, size_t i) {
  return i % 2 == 0 ? e2m1_unpack_lo(packed[i / 2]) : e2m1_unpack_hi(packed[i / 2]);
}

std::vector<float> nvfp4_dequant(const Cast& c, int64_t n_rows, int64_t n_cols) {
  std::vector<float> y(static_cast<size_t>(n_rows * n_cols));
  Nvfp4DequantizeParams p;
  p.packed = c.packed.data();
  p.scale = c.scale.data();
  p.scale_2 = &c.scale_2;
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.y = y.data();
  nvfp4_dequantize_ref(p);
  return y;
}

}  // namespace

TEST_CASE("in-window blocks keep their nibbles and get scale 2^(k_j - k_max + 8)", "[mxfp4]") {
  const int k_max_byte = GENERATE(127, 100, 140);
  Mxfp4 w = random_mxfp4(8, 256, k_max_byte - 17, k_max_byte, 7u + k_max_byte);
  w.e8m0[0] = static_cast<uint8_t>(k_max_byte);  // both window ends present
  w.e8m0[1] = static_cast<uint8_t>(k_max_byte - 17);
  const Cast c = cast(w);
  const int k_max = k_max_byte - 127;
  CHECK(c.scale_2 == std::ldexp(1.0f, k_max - 8));
  const size_t n_blocks32 = w.e8m0.size();
  CHECK(c.counts[kMxfp4CountLossless] == n_blocks32);
  CHECK(c.counts[kMxfp4CountFallback] == 0);
  CHECK(c.counts[kMxfp4CountNonfinite] == 0);
  for (size_t b = 0; b < n_blocks32; ++b) {
    const float want = std::ldexp(1.0f, (w.e8m0[b] - 127) - k_max + 8);
    INFO("block " << b << " e8m0 " << int(w.e8m0[b]));
    CHECK(e4m3_to_float(c.scale[2 * b]) == want);
    CHECK(c.scale[2 * b + 1] == c.scale[2 * b]);
  }
  Mismatches codes("E2M1 code");
  for (size_t i = 0; i < w.packed.size() * 2; ++i) {
    const uint8_t in = nibble(w.packed, i);
    const uint8_t want = (in & 0x7) ? in : 0;  // -0 (8) becomes +0: ModelOpt's `x < 0` sign
    codes.expect(i, nibble(c.packed, i), want);
  }
  CHECK(codes.count() == 0);
  const std::vector<float> y = nvfp4_dequant(c, w.n_rows, w.n_cols);
  Mismatches values("dequantized");
  for (size_t i = 0; i < y.size(); ++i) {
    const float want = mxfp4_dequantize_bf16(nibble(w.packed, i), w.e8m0[i / 32]);
    values.check(y[i] == want, i, y[i], want);
  }
  CHECK(values.count() == 0);
}

TEST_CASE("a block below the window uses ModelOpt's data-derived fallback", "[mxfp4]") {
  Mxfp4 w;
  w.n_rows = 1;
  w.n_cols = 64;
  w.e8m0 = {147, 127};  // k = 20 (sets k_max, m = 12), k = 0 (delta -12 < -9: fallback)
  w.packed.assign(32, 0x00);
  w.packed[0] = 0x7F;  // block 0: -6, 6
  // Block 1 (elements 32..63): magnitudes 6, 4, 3, 2, 1.5, -6, -0.5.
  const uint8_t codes[7] = {7, 6, 5, 4, 3, 15, 9};
  for (int i = 0; i < 7; ++i) {
    uint8_t& byte = w.packed[16 + i / 2];
    byte = i % 2 == 0 ? e2m1_pack(codes[i], e2m1_unpack_hi(byte))
                      : e2m1_pack(e2m1_unpack_lo(byte), codes[i]);
  }
  const Cast c = cast(w);
  CHECK(c.scale_2 == 4096.0f);
  // Block 0: closed form 6 * 2^20 / (6 * 2^12) = 256 (E4M3 0x78), nibbles kept.
  CHECK(c.scale[0] == 0x78);
  CHECK(c.packed[0] == 0x7F);
  // Block 1: amax = 6 * 2^0 (max nibble), s = 6 / (6 * 4096) = 2^-12 -> clamp 2^-9 (0x01), so the
  // divisor is 2^-9 * 4096 = 8: 6/8 = 0.75 -> 1.0 (2), 0.5 -> 1, 0.375 -> 1, 0.25 -> 0,
  // 0.1875 -> 0, -0.75 -> 10, -0.0625 -> 8 (tiny negative).
  CHECK(c.scale[2] == 0x01);
  CHECK(c.scale[3] == 0x01);
  const uint8_t want[7] = {2, 1, 1, 0, 0, 10, 8};
  for (int i = 0; i < 7; ++i) CHECK(int(nibble(c.packed, 32 + i)) == int(want[i]));
  CHECK(c.counts[kMxfp4CountLossless] == 1);
  CHECK(c.counts[kMxfp4CountFallback] == 1);
}

TEST_CASE("w1/w3 share k_max: one scale_2, lossless counted against the shared k_max", "[mxfp4]") {
  // w1 exponents in [-7, 10] (k_max 10), w3 in [0, 14] (k_max 14): shared k_max 14, m = 6.
  const Mxfp4 w1 = random_mxfp4(4, 128, 127 - 7, 127 + 10, 11);
  Mxfp4 w3 = random_mxfp4(4, 128, 127, 127 + 14, 12);
  w3.e8m0[3] = 127 + 14;
  Mxfp4 w1_fixed = w1;
  w1_fixed.e8m0[0] = 127 + 10;
  const Cast c1 = cast(w1_fixed, &w3);
  const Cast c3 = cast(w3, &w1_fixed);
  CHECK(c1.scale_2 == 64.0f);
  CHECK(c3.scale_2 == 64.0f);
  uint64_t want_lossless = 0;
  for (size_t b = 0; b < w1_fixed.e8m0.size(); ++b) {
    const int k = w1_fixed.e8m0[b] - 127;
    // In w1's own window (no fallback), but k - 6 < -9 clamps to 2^-9 for k < -3: lossy.
    const float want = std::ldexp(1.0f, std::max(k - 6, -9));
    CHECK(e4m3_to_float(c1.scale[2 * b]) == want);
    want_lossless += k >= 14 - 17;
  }
  CHECK(c1.counts[kMxfp4CountLossless] == want_lossless);
  CHECK(c1.counts[kMxfp4CountFallback] == 0);
  CHECK(want_lossless < w1_fixed.e8m0.size());
  // Without the pair, w1 is lossless on its own k_max.
  CHECK(cast(w1_fixed).counts[kMxfp4CountLossless] == w1_fixed.e8m0.size());
}

TEST_CASE("E8M0 byte 0 blocks are ignored for k_max", "[mxfp4]") {
  CHECK(mxfp4_k_max(0) == 0);
  CHECK(mxfp4_k_max_local(0) == -127);
  CHECK(mxfp4_k_max(130) == 3);
  SECTION("all scales zero: k_max 0, scale_2 2^-8, every block in range and lossless") {
    Mxfp4 w = random_mxfp4(2, 64, 0, 0, 5);
    w.packed[0] = 0xF7;  // +6 * 2^-127, -6 * 2^-127
    const Cast c = cast(w);
    CHECK(c.scale_2 == 0x1p-8f);
    CHECK(c.counts[kMxfp4CountLossless] == 4);
    CHECK(c.counts[kMxfp4CountFallback] == 0);
    // 6 * 2^-127 / (6 * 2^-8) = 2^-119 -> clamp 2^-9; y = x / 2^-17 is tiny: code 0 or 8.
    for (uint8_t s : c.scale) CHECK(s == 0x01);
    CHECK(c.packed[0] == 0x80);
  }
  SECTION("mixed: zero blocks fall back but count as lossless; k_max from the others") {
    Mxfp4 w = random_mxfp4(2, 128, 120, 127, 6);
    w.e8m0[2] = 0;
    w.e8m0[5] = 0;
    w.e8m0[1] = 127;
    const Cast c = cast(w);
    CHECK(c.scale_2 == 0x1p-8f);  // k_max 0 from the non-zero bytes
    CHECK(c.counts[kMxfp4CountLossless] == w.e8m0.size());
    CHECK(c.counts[kMxfp4CountFallback] == 2);
  }
}

TEST_CASE("NaN scale byte and overflow are counted as non-finite", "[mxfp4]") {
  Mxfp4 w = random_mxfp4(1, 64, 120, 127, 8);
  w.e8m0[1] = 255;
  const Cast c = cast(w);
  CHECK(c.counts[kMxfp4CountNonfinite] == 32);
  w.e8m0[1] = 254;  // k = 127: magnitudes >= 2 overflow
  w.packed.assign(32, 0x44);
  const Cast c2 = cast(w);
  CHECK(c2.counts[kMxfp4CountNonfinite] == 32);
}

TEST_CASE("SWAR -0 fix equals the per-nibble rule", "[mxfp4]") {
  std::mt19937 rng(3);
  for (int t = 0; t < 100000; ++t) {
    const uint32_t w = rng();
    uint32_t want = 0;
    for (int i = 0; i < 8; ++i) {
      const uint32_t n = (w >> (4 * i)) & 0xF;
      want |= ((n & 7) ? n : 0u) << (4 * i);
    }
    REQUIRE(mxfp4_codes_drop_negative_zero(w) == want);
  }
}

TEST_CASE("exp2_int matches torch.exp2 on integers", "[mxfp4]") {
  CHECK(exp2_int(0) == 1.0f);
  CHECK(exp2_int(-127) == std::ldexp(1.0f, -127));
  CHECK(exp2_int(-149) == std::ldexp(1.0f, -149));
  CHECK(exp2_int(-150) == 0.0f);
  CHECK(exp2_int(127) == std::ldexp(1.0f, 127));
  CHECK(std::isinf(exp2_int(128)));
}

TEST_CASE("the GPU kernel's block routine equals the reference loop", "[mxfp4]") {
  // mxfp4_to_nvfp4_block is what mxfp4_to_nvfp4_kernel runs per thread.
  const int scales = GENERATE(0, 1, 2, 3);
  Mxfp4 w = random_mxfp4(32, 512, 110, 127, 40u + scales);
  std::mt19937 rng(scales);
  for (auto& s : w.e8m0) {
    if (scales == 1) s = static_cast<uint8_t>(rng() % 4 == 0 ? 0 : 90 + rng() % 40);
    if (scales == 2) s = static_cast<uint8_t>(rng() % 3 == 0 ? 250 + rng() % 6 : 100 + rng() % 30);
  }
  const Mxfp4 pair = random_mxfp4(32, 512, 120, 135, 50);
  const Cast c = cast(w, scales == 3 ? &pair : nullptr);
  int k_max = mxfp4_k_max(e8m0_max(w.e8m0));
  if (scales == 3) k_max = std::max(k_max, mxfp4_k_max(e8m0_max(pair.e8m0)));
  const int k_max_local = mxfp4_k_max_local(e8m0_max(w.e8m0));
  REQUIRE(c.scale_2 == mxfp4_nvfp4_scale_2(k_max));
  uint32_t n_nonfinite = 0;
  // A block differs in its scale or its codes; shown: its scale and the reference's.
  Mismatches blocks("block scale", 0, 3);
  for (size_t b = 0; b < w.e8m0.size(); ++b) {
    uint32_t words[4], out[4];
    std::memcpy(words, &w.packed[16 * b], sizeof(words));
    const uint8_t scale =
        mxfp4_to_nvfp4_block(words, w.e8m0[b], k_max_local, c.scale_2, out, &n_nonfinite);
    blocks.check(scale == c.scale[2 * b] && std::memcmp(out, &c.packed[16 * b], 16) == 0, b, scale,
                 c.scale[2 * b]);
  }
  CHECK(blocks.count() == 0);
  CHECK(n_nonfinite == c.counts[kMxfp4CountNonfinite]);
}

TEST_CASE("MXFP4 shape checks", "[mxfp4]") {
  Mxfp4 w = random_mxfp4(1, 64, 120, 127, 9);
  w.n_cols = 48;
  CHECK_THROWS_AS(cast(w), Error);
}
