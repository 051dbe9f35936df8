// Exhaustive tests of the FP8 E4M3 "fn" codec (numerics/e4m3.hpp): every byte decodes against a
// field-wise decoder and round-trips; encode matches a brute-force nearest-even search on every
// BF16 value and at every midpoint; torch's named cases; saturation and NaN policy.
#include <cmath>
#include <cstdint>
#include <limits>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "numerics/bf16.hpp"
#include "numerics/e4m3.hpp"

using namespace qf::numerics;
using qf::test::Mismatches;

namespace {

// Independent decoder from the fields (1/4/3, bias 7; S.1111.111 is NaN; no Inf).
double e4m3_fields_to_double(uint8_t code) {
  const int sign = code >> 7;
  const int exp_field = (code >> 3) & 0xF;
  const int man = code & 0x7;
  double mag;
  if (exp_field == 0xF && man == 0x7) {
    mag = std::numeric_limits<double>::quiet_NaN();
  } else if (exp_field == 0) {
    mag = std::ldexp(static_cast<double>(man), -6 - 3);
  } else {
    mag = std::ldexp(static_cast<double>(8 + man), exp_field - 7 - 3);
  }
  return sign ? -mag : mag;
}

// Brute-force reference: the nearest of the 127 non-negative finite codes, ties to the even
// code, |x| >= 448 saturates, NaN -> 0x7F with the sign bit, sign copied from x.
uint8_t e4m3_encode_ref(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  if (std::isnan(x)) return sign | 0x7F;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= 448.0) return sign | 0x7E;
  uint8_t lo = 0;
  while (lo + 1 <= 0x7E && e4m3_fields_to_double(static_cast<uint8_t>(lo + 1)) <= a) ++lo;
  const double v_lo = e4m3_fields_to_double(lo);
  if (v_lo == a) return sign | lo;
  const uint8_t hi = static_cast<uint8_t>(lo + 1);
  const double d_lo = a - v_lo;
  const double d_hi = e4m3_fields_to_double(hi) - a;
  if (d_lo < d_hi) return sign | lo;
  if (d_hi < d_lo) return sign | hi;
  return sign | ((lo & 1) ? hi : lo);
}

}  // namespace

TEST_CASE("e4m3: every byte decodes like the field-wise decoder", "[numerics][e4m3]") {
  for (int c = 0; c < 256; ++c) {
    const auto code = static_cast<uint8_t>(c);
    const double want = e4m3_fields_to_double(code);
    const float got = e4m3_to_float(code);
    CAPTURE(c);
    if (std::isnan(want)) {
      CHECK(std::isnan(got));
      CHECK((code & 0x7F) == 0x7F);
    } else {
      CHECK(static_cast<double>(got) == want);
      CHECK(std::signbit(got) == (c >= 0x80));
    }
  }
  CHECK(e4m3_to_float(0x7E) == 448.0f);
  CHECK(e4m3_to_float(0xFE) == -448.0f);
  CHECK(e4m3_to_float(0x01) == std::ldexp(1.0f, -9));
  CHECK(e4m3_to_float(0x07) == 7 * std::ldexp(1.0f, -9));
  CHECK(e4m3_to_float(0x08) == std::ldexp(1.0f, -6));
  CHECK(e4m3_to_float(0x38) == 1.0f);
  CHECK(std::signbit(e4m3_to_float(0x80)));
  CHECK(e4m3_to_float(0x80) == 0.0f);
}

TEST_CASE("e4m3: encode(decode(c)) == c for every non-NaN byte, NaN keeps its sign",
          "[numerics][e4m3]") {
  for (int c = 0; c < 256; ++c) {
    const auto code = static_cast<uint8_t>(c);
    CAPTURE(c);
    // Includes -0 (0x80 -> -0.0f -> 0x80) and NaN (0x7F -> 0x7F, 0xFF -> 0xFF: the decoded NaN
    // keeps the sign bit and the encoder copies it).
    CHECK(float_to_e4m3(e4m3_to_float(code)) == code);
  }
  CHECK(float_to_e4m3(-0.0f) == 0x80);
  CHECK(float_to_e4m3(0.0f) == 0x00);
  CHECK(float_to_e4m3(std::numeric_limits<float>::quiet_NaN()) == 0x7F);
  CHECK(float_to_e4m3(-std::numeric_limits<float>::quiet_NaN()) == 0xFF);
}

TEST_CASE("e4m3: midpoints of adjacent codes tie to even, +-1 float ulp go to the nearer",
          "[numerics][e4m3]") {
  for (int c = 0; c < 0x7E; ++c) {
    for (const float sign : {1.0f, -1.0f}) {
      const auto lo = static_cast<uint8_t>(c);
      const auto hi = static_cast<uint8_t>(c + 1);
      const uint8_t s = sign < 0 ? 0x80 : 0x00;
      const double mid_d = (e4m3_fields_to_double(lo) + e4m3_fields_to_double(hi)) / 2;
      const float mid = sign * static_cast<float>(mid_d);
      REQUIRE(std::fabs(static_cast<double>(mid)) == mid_d);  // exact in float32
      CAPTURE(c, sign);
      CHECK(float_to_e4m3(mid) == (s | ((c & 1) ? hi : lo)));
      CHECK(float_to_e4m3(std::nextafter(mid, sign * INFINITY)) == (s | hi));
      CHECK(float_to_e4m3(std::nextafter(mid, 0.0f)) == (s | lo));
    }
  }
}

TEST_CASE("e4m3: torch's rounding cases and saturation", "[numerics][e4m3]") {
  CHECK(float_to_e4m3(1.0625f) == 0x38);                  // -> 1.0 (tie, even)
  CHECK(e4m3_to_float(float_to_e4m3(1.1875f)) == 1.25f);  // tie, even
  CHECK(e4m3_to_float(float_to_e4m3(17.0f)) == 16.0f);    // tie, even
  CHECK(float_to_e4m3(std::ldexp(1.0f, -10)) == 0x00);    // half of min subnormal
  CHECK(float_to_e4m3(-std::ldexp(1.0f, -10)) == 0x80);   // -> -0
  CHECK(e4m3_to_float(float_to_e4m3(1.5f * std::ldexp(1.0f, -9))) == std::ldexp(1.0f, -8));
  CHECK(float_to_e4m3(std::nextafter(std::ldexp(1.0f, -10), 1.0f)) == 0x01);
  CHECK(float_to_e4m3(std::numeric_limits<float>::denorm_min()) == 0x00);
  CHECK(float_to_e4m3(-1e-30f) == 0x80);
  // Between the subnormal and normal ranges: 7.5 * 2^-9 ties between 0x07 and 0x08 -> 0x08.
  CHECK(float_to_e4m3(7.5f * std::ldexp(1.0f, -9)) == 0x08);
  for (const float x :
       {448.0f, 449.0f, 463.0f, 464.0f, 465.0f, 500.0f, 1e6f, 3.0e38f,
        std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity()}) {
    CAPTURE(x);
    CHECK(float_to_e4m3(x) == 0x7E);
    CHECK(float_to_e4m3(-x) == 0xFE);
  }
  CHECK(float_to_e4m3(447.0f) == 0x7E);  // nearest is 448
  CHECK(float_to_e4m3(431.0f) == 0x7D);  // 416 (0x7D) | 448 (0x7E): below the midpoint 432
  CHECK(float_to_e4m3(432.0f) == 0x7E);  // tie -> even code 0x7E
}

TEST_CASE("e4m3: encode matches a brute-force nearest-even search on every BF16 value",
          "[numerics][e4m3]") {
  Mismatches of_bf16("float_to_e4m3 of BF16 code", 0, 8);
  for (uint32_t c = 0; c < 65536; ++c) {
    const float x = bf16_to_float(static_cast<uint16_t>(c));
    of_bf16.expect(c, float_to_e4m3(x), e4m3_encode_ref(x));
  }
  CHECK(of_bf16.count() == 0);
  // Pseudo-random float32 patterns over the magnitudes where E4M3 is not saturated or zero.
  Mismatches of_float("float_to_e4m3 of float bits", 0, 8);
  uint32_t state = 12345;
  for (int i = 0; i < 200000; ++i) {
    state = state * 1664525u + 1013904223u;
    const uint32_t exp_field = 110 + (state >> 8) % 30;  // 2^-17 .. 2^12
    const uint32_t bits = (state & 0x80000000u) | (exp_field << 23) | ((state * 2654435761u) >> 9);
    const float x = bits_to_float(bits);
    of_float.expect(bits, float_to_e4m3(x), e4m3_encode_ref(x));
  }
  CHECK(of_float.count() == 0);
}
