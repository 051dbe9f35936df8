// Exhaustive tests of the BF16 codec (numerics/bf16.hpp): all 65536 patterns decode against a
// field-wise decoder, round-trip, and round to nearest-even at every midpoint. Not E4M3/E8M0/E2M1.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "catch_compat.hpp"
#include "numerics/bf16.hpp"

using namespace qf::numerics;

namespace {

// Independent decoder from the sign/exponent/mantissa fields (1/8/7, bias 127), in double.
double bf16_fields_to_double(uint16_t bits) {
  const int sign = bits >> 15;
  const int exp_field = (bits >> 7) & 0xFF;
  const int man = bits & 0x7F;
  double mag;
  if (exp_field == 0xFF) {
    mag = man == 0 ? std::numeric_limits<double>::infinity()
                   : std::numeric_limits<double>::quiet_NaN();
  } else if (exp_field == 0) {
    mag = std::ldexp(static_cast<double>(man), -126 - 7);
  } else {
    mag = std::ldexp(static_cast<double>(128 + man), exp_field - 127 - 7);
  }
  return sign ? -mag : mag;
}

bool bf16_is_nan(uint16_t bits) { return (bits & 0x7F80) == 0x7F80 && (bits & 0x7F) != 0; }

}  // namespace

TEST_CASE("bf16: every pattern decodes like the field-wise decoder", "[numerics][bf16]") {
  for (uint32_t c = 0; c < 65536; ++c) {
    const auto bits = static_cast<uint16_t>(c);
    const float got = bf16_to_float(bits);
    const double want = bf16_fields_to_double(bits);
    CAPTURE(c);
    if (std::isnan(want)) {
      CHECK(std::isnan(got));
    } else {
      CHECK(static_cast<double>(got) == want);
      CHECK(std::signbit(got) == ((c & 0x8000u) != 0));
    }
  }
}

TEST_CASE("bf16: encode(decode(c)) == c for non-NaN, NaN stays a quiet NaN with its sign",
          "[numerics][bf16]") {
  for (uint32_t c = 0; c < 65536; ++c) {
    const auto bits = static_cast<uint16_t>(c);
    CAPTURE(c);
    if (bf16_is_nan(bits)) {
      const uint16_t got = float_to_bf16(bf16_to_float(bits));
      CHECK(bf16_is_nan(got));
      CHECK(got == (bits | 0x0040));
    } else {
      CHECK(float_to_bf16(bf16_to_float(bits)) == bits);
    }
  }
}

TEST_CASE("bf16: midpoints between adjacent patterns round to even, +-1 ulp go to the nearer",
          "[numerics][bf16]") {
  // Adjacent BF16 magnitudes c, c+1 (0 .. max finite, and max finite -> Inf). BF16 is the top
  // half of float32, so their midpoint is the float32 (c << 16) + 0x8000 exactly.
  for (uint32_t c = 0; c < 0x7F80; ++c) {
    for (const uint32_t sign : {0u, 0x8000u}) {
      const uint32_t mid_bits = ((sign | c) << 16) + 0x8000u;
      float mid;
      std::memcpy(&mid, &mid_bits, sizeof(mid));
      if (c + 1 < 0x7F80) {
        const double mid_d = (bf16_fields_to_double(static_cast<uint16_t>(sign | c)) +
                              bf16_fields_to_double(static_cast<uint16_t>(sign | (c + 1)))) /
                             2;
        REQUIRE(static_cast<double>(mid) == mid_d);
      }
      const uint16_t lo = static_cast<uint16_t>(sign | c);
      const uint16_t hi = static_cast<uint16_t>(sign | (c + 1));
      const uint16_t even = (c & 1u) ? hi : lo;
      CAPTURE(c, sign);
      CHECK(float_to_bf16(mid) == even);
      CHECK(float_to_bf16(std::nextafter(mid, sign ? -INFINITY : INFINITY)) == hi);
      CHECK(float_to_bf16(std::nextafter(mid, 0.0f)) == lo);
    }
  }
}

TEST_CASE("bf16: specials and named cases", "[numerics][bf16]") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(float_to_bf16(inf) == 0x7F80);
  CHECK(float_to_bf16(-inf) == 0xFF80);
  CHECK(float_to_bf16(std::numeric_limits<float>::quiet_NaN()) == 0x7FC0);
  CHECK(float_to_bf16(-std::numeric_limits<float>::quiet_NaN()) == 0xFFC0);
  // A signaling NaN whose payload lives only in the low 16 bits must not become Inf.
  uint32_t snan_bits = 0x7F800001u;
  float snan;
  std::memcpy(&snan, &snan_bits, sizeof(snan));
  CHECK(float_to_bf16(snan) == 0x7FC0);
  CHECK(float_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // rounds past max finite
  CHECK(float_to_bf16(0.0f) == 0x0000);
  CHECK(float_to_bf16(-0.0f) == 0x8000);
  CHECK(float_to_bf16(1.0f) == 0x3F80);
  CHECK(float_to_bf16(1.00390625f) == 0x3F80);  // 1 + 2^-8: tie, 0x3F80 is even
  CHECK(float_to_bf16(1.01171875f) == 0x3F82);  // 1 + 3*2^-8: tie, 0x3F82 is even
  CHECK(float_to_bf16(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(bf16_to_float(0x0001) == std::ldexp(1.0f, -133));
}
