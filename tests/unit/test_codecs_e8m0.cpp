// Exhaustive tests of the UE8M0 codec (numerics/e8m0.hpp): every byte decodes to 2^(b-127) and
// round-trips; the encoder reproduces torch's float8_e8m0fnu cast rule (c10 Float8_e8m0fnu.h)
// at every binade's rounding point, on subnormals, signs, NaN/Inf; e8m0_from_exponent clamps.
#include <cmath>
#include <cstdint>
#include <limits>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "numerics/bf16.hpp"
#include "numerics/e8m0.hpp"

using namespace qf::numerics;
using qf::test::Mismatches;

namespace {

// Independent statement of torch's rule, in values rather than bits: NaN/Inf -> 0xFF; for
// a = |x| in the normal binade [2^e, 2^(e+1)) the result is e (biased) if a < 1.5 * 2^e and
// e + 1 otherwise (255 = NaN past the top); below 2^-126 it is 0 for a <= 2^-127, else 1.
uint8_t e8m0_encode_ref(float x) {
  if (!std::isfinite(x)) return 0xFF;
  const double a = std::fabs(static_cast<double>(x));
  if (a < std::ldexp(1.0, -126)) return a <= std::ldexp(1.0, -127) ? 0 : 1;
  int e2 = 0;
  std::frexp(a, &e2);  // a = f * 2^e2, f in [0.5, 1) -> binade 2^(e2 - 1)
  const int e = e2 - 1;
  const int biased = e + 127;
  return static_cast<uint8_t>(a < 1.5 * std::ldexp(1.0, e) ? biased : biased + 1);
}

}  // namespace

TEST_CASE("e8m0: every byte decodes to 2^(b - 127), 0xFF is NaN", "[numerics][e8m0]") {
  for (int b = 0; b < 255; ++b) {
    CAPTURE(b);
    CHECK(static_cast<double>(e8m0_to_float(static_cast<uint8_t>(b))) == std::ldexp(1.0, b - 127));
  }
  CHECK(std::isnan(e8m0_to_float(0xFF)));
  CHECK(e8m0_to_float(0) == bits_to_float(0x00400000u));  // 2^-127, a float32 subnormal
  CHECK(e8m0_to_float(127) == 1.0f);
  CHECK(e8m0_to_float(254) == std::ldexp(1.0f, 127));
}

TEST_CASE("e8m0: encode(decode(b)) == b for every byte", "[numerics][e8m0]") {
  for (int b = 0; b < 256; ++b) {
    CAPTURE(b);
    CHECK(float_to_e8m0(e8m0_to_float(static_cast<uint8_t>(b))) == b);
  }
}

TEST_CASE("e8m0: each binade rounds up from 1.5 * 2^e (ties up), like torch", "[numerics][e8m0]") {
  for (int b = 1; b <= 254; ++b) {
    const float v = std::ldexp(1.0f, b - 127);
    const float tie = 1.5f * v;
    const int up = b + 1;  // 255 (NaN) above the top binade, as in torch
    CAPTURE(b);
    CHECK(float_to_e8m0(tie) == up);
    CHECK(float_to_e8m0(std::nextafter(tie, 0.0f)) == b);
    CHECK(float_to_e8m0(std::nextafter(tie, INFINITY)) == up);
    CHECK(float_to_e8m0(-tie) == up);                    // sign ignored
    CHECK(float_to_e8m0(std::nextafter(v, 0.0f)) == b);  // just below 2^e rounds up to it
  }
  CHECK(float_to_e8m0(1.4f) == 127);
  CHECK(float_to_e8m0(1.5f) == 128);
  CHECK(float_to_e8m0(2.9f) == 128);
  CHECK(float_to_e8m0(3.0f) == 129);
  CHECK(float_to_e8m0(std::numeric_limits<float>::max()) == 0xFF);
  CHECK(float_to_e8m0(std::nextafter(1.5f * std::ldexp(1.0f, 127), 0.0f)) == 254);
}

TEST_CASE("e8m0: zero, subnormals, negatives, NaN and Inf", "[numerics][e8m0]") {
  CHECK(float_to_e8m0(0.0f) == 0);
  CHECK(float_to_e8m0(-0.0f) == 0);
  CHECK(float_to_e8m0(std::numeric_limits<float>::denorm_min()) == 0);
  CHECK(float_to_e8m0(bits_to_float(0x00200000u)) == 0);  // 2^-128
  CHECK(float_to_e8m0(bits_to_float(0x00400000u)) == 0);  // 2^-127 exactly (subnormal tie)
  CHECK(float_to_e8m0(bits_to_float(0x00400001u)) == 1);  // just above -> 2^-126
  CHECK(float_to_e8m0(bits_to_float(0x00600000u)) == 1);
  CHECK(float_to_e8m0(std::numeric_limits<float>::min()) == 1);  // 2^-126
  CHECK(float_to_e8m0(-1.0f) == 127);
  CHECK(float_to_e8m0(-3.0f) == 129);
  CHECK(float_to_e8m0(std::numeric_limits<float>::infinity()) == 0xFF);
  CHECK(float_to_e8m0(-std::numeric_limits<float>::infinity()) == 0xFF);
  CHECK(float_to_e8m0(std::numeric_limits<float>::quiet_NaN()) == 0xFF);
  CHECK(float_to_e8m0(-std::numeric_limits<float>::quiet_NaN()) == 0xFF);
}

TEST_CASE("e8m0: encode matches the value-domain statement of torch's rule", "[numerics][e8m0]") {
  Mismatches of_bf16("float_to_e8m0 of BF16 code", 0, 8);
  for (uint32_t c = 0; c < 65536; ++c) {
    const float x = bf16_to_float(static_cast<uint16_t>(c));
    of_bf16.expect(c, float_to_e8m0(x), e8m0_encode_ref(x));
  }
  CHECK(of_bf16.count() == 0);
  Mismatches of_float("float_to_e8m0 of float bits", 0, 8);
  uint32_t state = 777;
  for (int i = 0; i < 300000; ++i) {
    state = state * 1664525u + 1013904223u;
    const uint32_t bits = state ^ (state >> 13);
    const float x = bits_to_float(bits);
    of_float.expect(bits, float_to_e8m0(x), e8m0_encode_ref(x));
  }
  CHECK(of_float.count() == 0);
}

TEST_CASE("e8m0: e8m0_from_exponent is exact inside the range and clamps outside",
          "[numerics][e8m0]") {
  for (int k = -300; k <= 300; ++k) {
    CAPTURE(k);
    const int want = k < -127 ? 0 : (k > 127 ? 254 : k + 127);
    CHECK(e8m0_from_exponent(k) == want);
    if (k >= -127 && k <= 127) {
      CHECK(static_cast<double>(e8m0_to_float(e8m0_from_exponent(k))) == std::ldexp(1.0, k));
      CHECK(float_to_e8m0(std::ldexp(1.0f, k)) == want);
    }
  }
}
