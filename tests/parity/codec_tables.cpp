// Prints our scalar codecs as JSON on stdout for tests/parity/check_codecs.py: the decoded value
// of every E4M3 / E8M0 byte and E2M1 code, and our E4M3 / E8M0 / E2M1 / BF16 encodings of a
// deterministic probe list. Owns no numerics (numerics/*.hpp does). Usage: codec_tables > t.json
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "numerics/codecs.hpp"

using namespace qf::numerics;

namespace {

// Exact decimal for a finite float (%.17g round-trips a double, and every float is a double);
// NaN as null (JSON has no NaN). No decoded table holds an Inf.
std::string number(float x) {
  if (std::isnan(x)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", static_cast<double>(x));
  return buf;
}

template <typename T, typename F>
void print_array(const char* key, const std::vector<T>& items, F&& fmt, bool last = false) {
  std::printf("  \"%s\": [", key);
  for (size_t i = 0; i < items.size(); ++i) {
    std::printf("%s%s", i ? ", " : "", fmt(items[i]).c_str());
  }
  std::printf("]%s\n", last ? "" : ",");
}

void add_with_neighbours(std::vector<float>* probes, float x) {
  for (const float s : {1.0f, -1.0f}) {
    const float v = s * x;
    probes->push_back(v);
    probes->push_back(std::nextafter(v, std::numeric_limits<float>::infinity()));
    probes->push_back(std::nextafter(v, -std::numeric_limits<float>::infinity()));
  }
}

std::vector<float> make_probes() {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> p = {0.0f,
                          -0.0f,
                          inf,
                          -inf,
                          nan,
                          -nan,
                          std::numeric_limits<float>::max(),
                          -std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::min(),
                          bits_to_float(0x00400000u),  // 2^-127
                          bits_to_float(0x00400001u),
                          bits_to_float(0x00200000u),
                          bits_to_float(0x7F800001u),
                          1.0625f,
                          1.1875f,
                          17.0f,
                          std::ldexp(1.0f, -10),
                          1.5f * std::ldexp(1.0f, -9),
                          448.0f,
                          449.0f,
                          463.0f,
                          464.0f,
                          465.0f,
                          480.0f,
                          500.0f,
                          1e6f,
                          3e38f,
                          1.4f,
                          1.5f,
                          2.9f,
                          3.0f,
                          0.1f,
                          1e-3f,
                          1e-40f};
  // E2M1 bounds and values.
  for (const float b : {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f,
                        4.0f, 6.0f, 7.0f}) {
    add_with_neighbours(&p, b);
  }
  // Every E4M3 midpoint (incl. 448 | 480 = 464) and code value.
  for (int c = 0; c < 0x7F; ++c) {
    const float v0 = e4m3_to_float(static_cast<uint8_t>(c));
    const float v1 = c < 0x7E ? e4m3_to_float(static_cast<uint8_t>(c + 1)) : 480.0f;
    add_with_neighbours(&p, v0);
    add_with_neighbours(&p, 0.5f * (v0 + v1));
  }
  // E8M0 rounding points 1.5 * 2^k and powers of two over the whole range.
  for (int k = -127; k <= 127; ++k) {
    add_with_neighbours(&p, std::ldexp(1.0f, k));
    add_with_neighbours(&p, 1.5f * std::ldexp(1.0f, k));
  }
  // BF16 midpoints at a few magnitudes.
  for (const uint32_t c :
       {0x0000u, 0x0001u, 0x007Fu, 0x0080u, 0x3F80u, 0x3F81u, 0x4300u, 0x7F7Fu}) {
    add_with_neighbours(&p, bits_to_float((c << 16) + 0x8000u));
  }
  // Deterministic pseudo-random: magnitudes 2^-30 .. 2^30 (where E4M3/E2M1/E8M0 all matter),
  // then arbitrary bit patterns.
  uint32_t state = 0x2545F491u;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
  };
  for (int i = 0; i < 3000; ++i) {
    const uint32_t r = next();
    const uint32_t exp_field = 97 + next() % 61;
    p.push_back(bits_to_float((r & 0x80000000u) | (exp_field << 23) | (r & 0x7FFFFFu)));
  }
  for (int i = 0; i < 2000; ++i) p.push_back(bits_to_float(next()));
  return p;
}

std::string u32(uint32_t v) { return std::to_string(v); }

}  // namespace

int main() {
  std::vector<uint8_t> bytes(256), nibbles(16);
  for (int i = 0; i < 256; ++i) bytes[i] = static_cast<uint8_t>(i);
  for (int i = 0; i < 16; ++i) nibbles[i] = static_cast<uint8_t>(i);
  const std::vector<float> probes = make_probes();

  std::printf("{\n");
  print_array("e4m3_decode", bytes, [](uint8_t b) { return number(e4m3_to_float(b)); });
  print_array("e8m0_decode", bytes, [](uint8_t b) { return number(e8m0_to_float(b)); });
  print_array("e2m1_decode", nibbles, [](uint8_t c) { return number(e2m1_to_float(c)); });
  // Probes as float32 bit patterns so that -0, NaN signs and subnormals survive JSON exactly.
  print_array("probe_bits", probes, [](float x) { return u32(float_to_bits(x)); });
  print_array("e4m3_encode", probes, [](float x) { return u32(float_to_e4m3(x)); });
  print_array("e8m0_encode", probes, [](float x) { return u32(float_to_e8m0(x)); });
  print_array("e2m1_encode", probes, [](float x) { return u32(float_to_e2m1(x)); });
  print_array(
      "bf16_encode", probes, [](float x) { return u32(float_to_bf16(x)); }, true);
  std::printf("}\n");
  return 0;
}
