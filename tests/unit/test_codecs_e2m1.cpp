// Exhaustive tests of the FP4 E2M1 codec (numerics/e2m1.hpp): all 16 codes decode against the
// field-wise decoder and the FORMATS.md table, ModelOpt's threshold rule at every bound and on
// every BF16 value, the NaN/-0 policy, and golden bytes for nibble packing.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "numerics/bf16.hpp"
#include "numerics/e2m1.hpp"

using namespace qf::numerics;
using qf::test::Mismatches;

namespace {

// Independent decoder from the fields (1/2/1, bias 1, exponent field 0 is subnormal).
double e2m1_fields_to_double(uint8_t code) {
  const int sign = (code >> 3) & 1;
  const int exp_field = (code >> 1) & 3;
  const int man = code & 1;
  const double mag = exp_field == 0 ? 0.5 * man : std::ldexp(1.0 + 0.5 * man, exp_field - 1);
  return sign ? -mag : mag;
}

// ModelOpt _cast_fp4 transcribed: ord = searchsorted(bounds, |x|) (left: count of bounds < |x|)
// + 1 if |x| equals a bound at an odd index; sign bit = x < 0. NaN: searchsorted puts it last.
uint8_t e2m1_encode_modelopt(float x) {
  static const double kBounds[7] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0};
  const double a = std::fabs(static_cast<double>(x));
  int ord = 0;
  if (std::isnan(a)) {
    ord = 7;
  } else {
    for (int i = 0; i < 7; ++i) ord += kBounds[i] < a;
    for (int i = 1; i < 7; i += 2) ord += kBounds[i] == a;
  }
  return static_cast<uint8_t>((x < 0 ? 8 : 0) + ord);
}

}  // namespace

TEST_CASE("e2m1: every code decodes like the table and the field-wise decoder",
          "[numerics][e2m1]") {
  const float kTable[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};  // FORMATS.md 1
  for (int c = 0; c < 16; ++c) {
    const auto code = static_cast<uint8_t>(c);
    const float got = e2m1_to_float(code);
    CAPTURE(c);
    CHECK(static_cast<double>(got) == e2m1_fields_to_double(code));
    CHECK(got == (c < 8 ? kTable[c] : -kTable[c - 8]));
    CHECK(std::signbit(got) == (c >= 8));
    CHECK(e2m1_to_float(static_cast<uint8_t>(code | 0xF0)) == got);  // high bits ignored
  }
  CHECK(std::signbit(e2m1_to_float(8)));  // code 8 is -0
}

TEST_CASE("e2m1: encode(decode(c)) == c, except -0 which encodes to +0 (sign iff x < 0)",
          "[numerics][e2m1]") {
  for (int c = 0; c < 16; ++c) {
    CAPTURE(c);
    CHECK(float_to_e2m1(e2m1_to_float(static_cast<uint8_t>(c))) == (c == 8 ? 0 : c));
  }
}

TEST_CASE("e2m1: ModelOpt threshold rule at every bound", "[numerics][e2m1]") {
  struct Bound {
    float at;
    uint8_t below, on, above;
  };
  // on 0.75/1.75/3.5 round up, on 0.25/1.25/2.5/5 round down, > 5 saturates to 6.
  const Bound kBounds[] = {{0.25f, 0, 0, 1}, {0.75f, 1, 2, 2}, {1.25f, 2, 2, 3}, {1.75f, 3, 4, 4},
                           {2.5f, 4, 4, 5},  {3.5f, 5, 6, 6},  {5.0f, 6, 6, 7}};
  for (const Bound& b : kBounds) {
    for (const float sign : {1.0f, -1.0f}) {
      const uint8_t s = sign < 0 ? 8 : 0;
      const float x = sign * b.at;
      CAPTURE(b.at, sign);
      CHECK(float_to_e2m1(std::nextafter(x, 0.0f)) == (s | b.below));
      CHECK(float_to_e2m1(x) == (s | b.on));
      CHECK(float_to_e2m1(std::nextafter(x, sign * INFINITY)) == (s | b.above));
    }
  }
  // Every tie goes to the even code (RNE on the mantissa), so check that too.
  for (int c = 0; c < 7; ++c) {
    const double mid = (e2m1_fields_to_double(static_cast<uint8_t>(c)) +
                        e2m1_fields_to_double(static_cast<uint8_t>(c + 1))) /
                       2;
    CAPTURE(c);
    CHECK(float_to_e2m1(static_cast<float>(mid)) == ((c & 1) ? c + 1 : c));
  }
}

TEST_CASE("e2m1: saturation, small negatives, -0, NaN and Inf", "[numerics][e2m1]") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(float_to_e2m1(6.0f) == 7);
  CHECK(float_to_e2m1(7.0f) == 7);
  CHECK(float_to_e2m1(1e30f) == 7);
  CHECK(float_to_e2m1(inf) == 7);
  CHECK(float_to_e2m1(-inf) == 15);
  CHECK(float_to_e2m1(-100.0f) == 15);
  CHECK(float_to_e2m1(0.0f) == 0);
  CHECK(float_to_e2m1(-0.0f) == 0);   // -0.0 < 0 is false
  CHECK(float_to_e2m1(-0.1f) == 8);   // rounds to 0, sign kept: code 8
  CHECK(float_to_e2m1(-0.25f) == 8);  // tie rounds down to -0
  CHECK(float_to_e2m1(-std::numeric_limits<float>::denorm_min()) == 8);
  CHECK(float_to_e2m1(nan) == 7);  // policy: NaN -> +6 (ModelOpt searchsorted)
  CHECK(float_to_e2m1(-nan) == 7);
}

TEST_CASE("e2m1: encode matches ModelOpt's formula on every BF16 value", "[numerics][e2m1]") {
  Mismatches of_bf16("float_to_e2m1 of BF16 code", 0, 8);
  for (uint32_t c = 0; c < 65536; ++c) {
    const float x = bf16_to_float(static_cast<uint16_t>(c));
    of_bf16.expect(c, float_to_e2m1(x), e2m1_encode_modelopt(x));
  }
  CHECK(of_bf16.count() == 0);
}

TEST_CASE("e2m1: nibble packing golden bytes (element 2i in the low nibble)", "[numerics][e2m1]") {
  // Elements 0.5, -1, 6, -0(code 8), 3, 0 -> codes 1, 0xA, 7, 8, 5, 0.
  const std::vector<float> elems = {0.5f, -1.0f, 6.0f, -0.1f, 3.0f, 0.0f};
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i < elems.size(); i += 2) {
    bytes.push_back(e2m1_pack(float_to_e2m1(elems[i]), float_to_e2m1(elems[i + 1])));
  }
  CHECK(bytes == std::vector<uint8_t>{0xA1, 0x87, 0x05});
  CHECK(e2m1_pack(0x1, 0x2) == 0x21);
  CHECK(e2m1_pack(0xF1, 0xF2) == 0x21);  // only the low 4 bits of each code are used
  for (int b = 0; b < 256; ++b) {
    const auto byte = static_cast<uint8_t>(b);
    CAPTURE(b);
    CHECK(e2m1_unpack_lo(byte) == (b & 0xF));
    CHECK(e2m1_unpack_hi(byte) == (b >> 4));
    CHECK(e2m1_pack(e2m1_unpack_lo(byte), e2m1_unpack_hi(byte)) == byte);
  }
}
