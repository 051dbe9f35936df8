// GPTQ for NVFP4 (kernels/nvfp4_gptq_ref.cpp): the inverse factor is (H + damp)^-1's upper
// Cholesky factor; with U = identity GPTQ is plain rounding with the searched scales; on a
// synthetic linear with correlated inputs it lowers the output error ||X (W - Q)^T||^2 against
// plain rounding at the same weight_scale_2.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "kernels/nvfp4_gptq.cuh"
#include "kernels/nvfp4_search.cuh"
#include "numerics/bf16.hpp"
#include "numerics/nvfp4.hpp"
#include "numerics/nvfp4_search.hpp"

using namespace qf;
using namespace qf::kernels;
using namespace qf::numerics;

namespace {

struct Linear {
  int64_t n_out = 48, n_in = 96, n_tokens = 768;
  std::vector<float> w;   // [n_out, n_in], BF16-exact
  std::vector<float> x;   // [n_tokens, n_in]
  std::vector<double> h;  // X^T X [n_in, n_in]
};

// Inputs with strongly correlated neighbouring channels and a few outlier channels: where
// error feedback helps.
Linear synthetic_linear(uint32_t seed) {
  Linear l;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  l.w.resize(size_t(l.n_out * l.n_in));
  for (auto& v : l.w) v = bf16_to_float(float_to_bf16(normal(rng) * 0.05f));
  l.x.resize(size_t(l.n_tokens * l.n_in));
  for (int64_t t = 0; t < l.n_tokens; ++t) {
    float prev = 0;
    for (int64_t j = 0; j < l.n_in; ++j) {
      const float v = 0.8f * prev + 0.6f * normal(rng);
      l.x[size_t(t * l.n_in + j)] = v * (j % 17 == 3 ? 6.0f : 1.0f);
      prev = v;
    }
  }
  l.h.assign(size_t(l.n_in * l.n_in), 0.0);
  for (int64_t t = 0; t < l.n_tokens; ++t) {
    for (int64_t i = 0; i < l.n_in; ++i) {
      for (int64_t j = 0; j < l.n_in; ++j) {
        l.h[size_t(i * l.n_in + j)] +=
            double(l.x[size_t(t * l.n_in + i)]) * double(l.x[size_t(t * l.n_in + j)]);
      }
    }
  }
  return l;
}

std::vector<float> dequant(const std::vector<uint8_t>& packed, const std::vector<uint8_t>& scale,
                           float scale_2) {
  std::vector<float> y(packed.size() * 2);
  for (size_t i = 0; i < y.size(); ++i) {
    const uint8_t code = i % 2 == 0 ? (packed[i / 2] & 0xF) : (packed[i / 2] >> 4);
    y[i] = e2m1_to_float(code) * nvfp4_block_divisor(scale[i / 16], scale_2);
  }
  return y;
}

// ||X (W - Q)^T||^2: the linear's output error over the calibration tokens.
double output_error(const Linear& l, const std::vector<float>& q) {
  double total = 0;
  for (int64_t t = 0; t < l.n_tokens; ++t) {
    for (int64_t o = 0; o < l.n_out; ++o) {
      double y = 0;
      for (int64_t j = 0; j < l.n_in; ++j) {
        y += double(l.x[size_t(t * l.n_in + j)]) *
             (double(l.w[size_t(o * l.n_in + j)]) - double(q[size_t(o * l.n_in + j)]));
      }
      total += y * y;
    }
  }
  return total;
}

float amax_of(const std::vector<float>& x) {
  float a = 0;
  for (float v : x) a = std::max(a, std::fabs(v));
  return a;
}

}  // namespace

TEST_CASE("gptq: inverse factor U^T U = (H + damp)^-1", "[nvfp4_gptq]") {
  const Linear l = synthetic_linear(1);
  const int64_t n = l.n_in;
  std::vector<double> u(size_t(n * n));
  int n_retries = -1;
  bool identity = true;
  gptq_inverse_factor_ref({l.h.data(), n, kGptqDefaultDamp, u.data(), &n_retries, &identity});
  CHECK(n_retries == 0);
  CHECK_FALSE(identity);
  double mean_diag = 0;
  for (int64_t i = 0; i < n; ++i) mean_diag += l.h[size_t(i * n + i)] / double(n);
  // (H + damp) * (U^T U) = I
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) {
        double inv_kj = 0;  // (U^T U)[k][j] = sum_m U[m][k] U[m][j]
        for (int64_t m = 0; m < n; ++m) inv_kj += u[size_t(m * n + k)] * u[size_t(m * n + j)];
        const double hk = l.h[size_t(i * n + k)] + (i == k ? kGptqDefaultDamp * mean_diag : 0.0);
        s += hk * inv_kj;
      }
      worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
      if (j < i) REQUIRE(u[size_t(i * n + j)] == 0.0);
    }
  }
  CHECK(worst < 1e-8);
}

TEST_CASE("gptq: identity factor is plain rounding with the searched scales", "[nvfp4_gptq]") {
  const Linear l = synthetic_linear(2);
  const int64_t n = l.n_in;
  std::vector<double> eye(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) eye[size_t(i * n + i)] = 1.0;
  const float scale_2 = nvfp4_scale_2_candidate(amax_of(l.w), 0);
  for (const auto search : {Nvfp4BlockSearch::kMax, Nvfp4BlockSearch::kMse}) {
    std::vector<uint8_t> packed(l.w.size() / 2), scale(l.w.size() / 16);
    Nvfp4GptqParams g;
    g.w = l.w.data();
    g.n_rows = l.n_out;
    g.n_cols = n;
    g.u = eye.data();
    g.scale_2 = scale_2;
    g.search = search;
    g.packed = packed.data();
    g.scale = scale.data();
    nvfp4_gptq_quantize_ref(g);
    std::vector<uint8_t> packed2(packed.size()), scale2(scale.size());
    double error = 0;
    uint64_t n_nonfinite = 0;
    Nvfp4SearchQuantizeParams p;
    p.x = l.w.data();
    p.n_rows = l.n_out;
    p.n_cols = n;
    p.scale_2 = scale_2;
    p.search = search;
    p.packed = packed2.data();
    p.scale = scale2.data();
    p.error = &error;
    p.n_nonfinite = &n_nonfinite;
    nvfp4_search_quantize_ref(p);
    CHECK(packed == packed2);
    CHECK(scale == scale2);
  }
}

TEST_CASE("gptq: lower output error than plain rounding on a synthetic linear", "[nvfp4_gptq]") {
  for (uint32_t seed : {3u, 4u, 5u}) {
    const Linear l = synthetic_linear(seed);
    const int64_t n = l.n_in;
    const float scale_2 = nvfp4_scale_2_candidate(amax_of(l.w), 0);
    std::vector<double> u(size_t(n * n));
    gptq_inverse_factor_ref({l.h.data(), n, kGptqDefaultDamp, u.data(), nullptr, nullptr});
    std::vector<uint8_t> packed(l.w.size() / 2), scale(l.w.size() / 16);
    Nvfp4GptqParams g;
    g.w = l.w.data();
    g.n_rows = l.n_out;
    g.n_cols = n;
    g.u = u.data();
    g.scale_2 = scale_2;
    g.search = Nvfp4BlockSearch::kMse;
    g.packed = packed.data();
    g.scale = scale.data();
    nvfp4_gptq_quantize_ref(g);
    const double e_gptq = output_error(l, dequant(packed, scale, scale_2));
    for (const auto search : {Nvfp4BlockSearch::kMax, Nvfp4BlockSearch::kMse}) {
      std::vector<uint8_t> p2(packed.size()), s2(scale.size());
      double error = 0;
      uint64_t n_nonfinite = 0;
      Nvfp4SearchQuantizeParams p;
      p.x = l.w.data();
      p.n_rows = l.n_out;
      p.n_cols = n;
      p.scale_2 = scale_2;
      p.search = search;
      p.packed = p2.data();
      p.scale = s2.data();
      p.error = &error;
      p.n_nonfinite = &n_nonfinite;
      nvfp4_search_quantize_ref(p);
      const double e_plain = output_error(l, dequant(p2, s2, scale_2));
      INFO("seed " << seed << " gptq " << e_gptq << " plain " << e_plain);
      CHECK(e_gptq < 0.8 * e_plain);
    }
  }
}
