// Writes NVFP4 golden cases for tests/parity/check_nvfp4_torch.py: deterministic BF16 / MXFP4
// inputs, our CPU reference outputs (raw little-endian .bin files) and manifest.json into argv[1].
// Usage: nvfp4_golden OUT_DIR. Owns no numerics (kernels/nvfp4_quantize_ref.cpp does).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "kernels/nvfp4_quantize.cuh"
#include "tests/nvfp4_test_util.hpp"

using namespace qf;
using namespace qf::kernels;
using namespace qf::numerics;
using json = nlohmann::json;

namespace {

std::string g_dir;

template <typename T>
std::string write_bin(const std::string& name, const std::vector<T>& v) {
  const std::string path = g_dir + "/" + name;
  std::ofstream out(path, std::ios::binary);
  QF_CHECK(out.good(), "cannot open", path);
  out.write(reinterpret_cast<const char*>(v.data()),
            static_cast<std::streamsize>(v.size() * sizeof(T)));
  QF_CHECK(out.good(), "cannot write", path);
  return name;
}

std::string hex_bits(float f) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", float_to_bits(f));
  return buf;
}

const char* division_name(Nvfp4ScaleDivision d) {
  return d == Nvfp4ScaleDivision::kTrueDivide ? "true_divide" : "reciprocal_multiply";
}

float data_amax(const std::vector<uint16_t>& x) {
  uint64_t n_nonfinite = 0;
  const float amax = qf::test::bf16_amax_ref(x, &n_nonfinite);
  QF_CHECK(n_nonfinite == 0, "golden inputs must be finite");
  return amax;
}

// One quantize case. amax < 0: use the data amax (ModelOpt's own weight amax); otherwise a given
// (calibrated) amax. scale_2 = amax / 2688 with the given division rule.
json quantize_case(const std::string& name, const std::vector<uint16_t>& x, int64_t n_rows,
                   int64_t n_cols, Nvfp4ScaleDivision division, float given_amax) {
  const float amax = given_amax < 0 ? data_amax(x) : given_amax;
  const float scale_2 = nvfp4_scale_from_amax(amax, division);
  std::vector<uint8_t> packed(x.size() / 2), scale(x.size() / 16);
  uint64_t n_nonfinite = 0;
  Nvfp4QuantizeParams p;
  p.x = x.data();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.scale_2 = &scale_2;
  p.packed = packed.data();
  p.scale = scale.data();
  p.n_nonfinite = &n_nonfinite;
  nvfp4_quantize_ref(p);
  json c;
  c["name"] = name;
  c["kind"] = "quantize";
  c["n_rows"] = n_rows;
  c["n_cols"] = n_cols;
  c["division"] = division_name(division);
  c["amax_source"] = given_amax < 0 ? "data" : "given";
  c["amax_bits"] = hex_bits(amax);
  c["scale_2_bits"] = hex_bits(scale_2);
  c["x"] = write_bin(name + ".x.bf16", x);
  c["packed"] = write_bin(name + ".packed.u8", packed);
  c["scale"] = write_bin(name + ".scale.e4m3", scale);
  return c;
}

json cast_case(const std::string& name, const std::vector<uint8_t>& packed_in,
               const std::vector<uint8_t>& e8m0, const std::vector<uint8_t>* pair_e8m0,
               int64_t n_rows, int64_t n_cols) {
  auto max_of = [](const std::vector<uint8_t>& s) {
    uint32_t m = 0;
    Mxfp4E8m0MaxParams p;
    p.e8m0 = s.data();
    p.n_scales = static_cast<int64_t>(s.size());
    p.e8m0_max = &m;
    mxfp4_e8m0_max_ref(p);
    return m;
  };
  const uint32_t self_max = max_of(e8m0);
  const uint32_t pair_max = pair_e8m0 ? max_of(*pair_e8m0) : 0;
  std::vector<uint8_t> packed(packed_in.size()), scale(e8m0.size() * 2);
  float scale_2 = 0;
  uint64_t counts[kMxfp4CountSlots] = {};
  Mxfp4ToNvfp4Params p;
  p.packed = packed_in.data();
  p.e8m0 = e8m0.data();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.e8m0_max = &self_max;
  p.e8m0_max_pair = pair_e8m0 ? &pair_max : nullptr;
  p.out_packed = packed.data();
  p.out_scale = scale.data();
  p.out_scale_2 = &scale_2;
  p.counts = counts;
  mxfp4_to_nvfp4_ref(p);
  json c;
  c["name"] = name;
  c["kind"] = "mxfp4_cast";
  c["n_rows"] = n_rows;
  c["n_cols"] = n_cols;
  c["scale_2_bits"] = hex_bits(scale_2);
  c["n_blocks32"] = e8m0.size();
  c["n_lossless"] = counts[kMxfp4CountLossless];
  c["n_fallback"] = counts[kMxfp4CountFallback];
  c["packed_in"] = write_bin(name + ".in.packed.u8", packed_in);
  c["e8m0"] = write_bin(name + ".in.e8m0", e8m0);
  if (pair_e8m0) c["pair_e8m0"] = write_bin(name + ".in.pair.e8m0", *pair_e8m0);
  c["packed"] = write_bin(name + ".packed.u8", packed);
  c["scale"] = write_bin(name + ".scale.e4m3", scale);
  return c;
}

std::vector<uint16_t> normal_bf16(size_t n, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<uint16_t> x(n);
  for (auto& v : x) v = float_to_bf16(normal(rng));
  return x;
}

// Student-t(2) weights with planted outliers and zero / single-non-zero blocks.
std::vector<uint16_t> outlier_bf16(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> heavy(2.0f);
  std::vector<uint16_t> x(n);
  for (auto& v : x) v = float_to_bf16(0.01f * heavy(rng));
  for (size_t i = 0; i < n / 200; ++i)
    x[rng() % n] = float_to_bf16((rng() % 2 ? 3.0f : -3.0f) * (1 + rng() % 7));
  for (size_t b = 0; b + 16 <= n; b += 16 * 11) {
    for (size_t i = 0; i < 16; ++i) x[b + i] = 0;
    if (b % 32 == 0) x[b + rng() % 16] = float_to_bf16(0.05f);
  }
  return x;
}

// A BF16 amax in [1, 2) whose true-divide and reciprocal-multiply scale_2 differ.
float discriminating_amax() {
  for (uint16_t bits = 0x3F80; bits < 0x4000; ++bits) {
    const float a = bf16_to_float(bits);
    if (nvfp4_scale_from_amax(a, Nvfp4ScaleDivision::kTrueDivide) !=
        nvfp4_scale_from_amax(a, Nvfp4ScaleDivision::kReciprocalMultiply)) {
      return a;
    }
  }
  QF_FAIL("no discriminating amax in [1, 2)");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  g_dir = argv[1];
  try {
    std::filesystem::create_directories(g_dir);
    const auto kTrue = Nvfp4ScaleDivision::kTrueDivide;
    const auto kRecip = Nvfp4ScaleDivision::kReciprocalMultiply;
    json cases = json::array();

    const std::vector<uint16_t> normal = normal_bf16(64 * 256, 0.02f, 1);
    cases.push_back(quantize_case("normal_cpu", normal, 64, 256, kTrue, -1));
    cases.push_back(quantize_case("normal_cuda", normal, 64, 256, kRecip, -1));
    const std::vector<uint16_t> outliers = outlier_bf16(128 * 512, 2);
    cases.push_back(quantize_case("outliers_cpu", outliers, 128, 512, kTrue, -1));
    cases.push_back(quantize_case("outliers_cuda", outliers, 128, 512, kRecip, -1));
    const float amax = data_amax(outliers);
    cases.push_back(quantize_case("saturate_cpu", outliers, 128, 512, kTrue, amax / 8));
    cases.push_back(quantize_case("underflow_cpu", outliers, 128, 512, kTrue, amax * 1000));

    // Exact E2M1 bounds and their BF16 neighbours at divisor 1 (amax 42 -> scale_2 1/64).
    std::mt19937 rng(3);
    const float bounds[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f, 0.0f};
    std::vector<uint16_t> edge(32 * 64);
    for (size_t i = 0; i < edge.size(); ++i) {
      // A bound or one of its BF16 neighbours (0 has no lower one).
      const int base = float_to_bf16(bounds[rng() % 9]);
      uint16_t v = static_cast<uint16_t>(std::max(0, base + static_cast<int>(rng() % 3) - 1));
      if (rng() % 2) v |= 0x8000;
      edge[i] = i % 16 == 0 ? float_to_bf16(6.0f) : v;
    }
    cases.push_back(quantize_case("bounds_cpu", edge, 32, 64, kTrue, 42.0f));

    // Plant an amax whose scale_2 depends on the division rule: on the GPU torch must match
    // "_cuda" (reciprocal) and on the CPU "_cpu" (true division).
    std::vector<uint16_t> plant = normal_bf16(16 * 128, 0.1f, 4);
    plant[77] = float_to_bf16(-discriminating_amax());
    cases.push_back(quantize_case("division_cpu", plant, 16, 128, kTrue, -1));
    cases.push_back(quantize_case("division_cuda", plant, 16, 128, kRecip, -1));

    // Lossless MXFP4 -> NVFP4 casts.
    auto random_bytes = [&](size_t n, uint32_t seed) {
      std::mt19937 r(seed);
      std::vector<uint8_t> v(n);
      for (auto& b : v) b = static_cast<uint8_t>(r());
      return v;
    };
    const int64_t rows = 64, cols = 512;
    const std::vector<uint8_t> mx_packed = random_bytes(rows * cols / 2, 5);
    std::vector<uint8_t> window(rows * cols / 32), spread(rows * cols / 32), pair(rows * cols / 32);
    for (size_t i = 0; i < window.size(); ++i) {
      window[i] = static_cast<uint8_t>(110 + rng() % 18);
      spread[i] = static_cast<uint8_t>(rng() % 5 == 0 ? 0 : 95 + rng() % 35);
      pair[i] = static_cast<uint8_t>(115 + rng() % 20);
    }
    cases.push_back(cast_case("cast_window", mx_packed, window, nullptr, rows, cols));
    cases.push_back(cast_case("cast_spread", mx_packed, spread, nullptr, rows, cols));
    cases.push_back(cast_case("cast_pair", mx_packed, window, &pair, rows, cols));

    json manifest;
    manifest["format"] = "qf-nvfp4-golden-v1";
    manifest["cases"] = cases;
    std::ofstream out(g_dir + "/manifest.json");
    QF_CHECK(out.good(), "cannot write", g_dir + "/manifest.json");
    out << manifest.dump(1) << "\n";
    std::fprintf(stderr, "wrote %zu cases to %s\n", cases.size(), g_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
