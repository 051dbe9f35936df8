// Searched NVFP4 block scales (numerics/nvfp4_search.hpp, kernels/nvfp4_search_ref.cpp): the
// max rule gives nvfp4_quantize_ref's bytes; every search is never worse than max per block (in
// its own error: squared, or d^T H d); the reported error is the decoded bytes' error.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "kernels/nvfp4_quantize.cuh"
#include "kernels/nvfp4_search.cuh"
#include "numerics/bf16.hpp"
#include "numerics/nvfp4.hpp"
#include "numerics/nvfp4_search.hpp"

using namespace qf;
using namespace qf::kernels;
using namespace qf::numerics;

namespace {

// Random BF16-exact values: normal, heavy-tailed (Student-t-like) and blocks with one outlier,
// so that the 4-mapped and other scales win on some blocks.
std::vector<float> random_weights(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> kind(0, 2);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t b = 0; b < n / kNvfp4BlockSize; ++b) {
    const int k = kind(rng);
    for (int i = 0; i < kNvfp4BlockSize; ++i) {
      float v = normal(rng) * 0.02f;
      if (k == 1) v /= std::sqrt(std::max(1e-3f, std::fabs(normal(rng))));  // heavy tail
      if (k == 2 && i == 5) v *= 12.0f;                                     // one outlier
      x[size_t(b * kNvfp4BlockSize + i)] = bf16_to_float(float_to_bf16(v));
    }
  }
  return x;
}

struct Result {
  std::vector<uint8_t> packed, scale;
  double error = 0;
  uint64_t n_moved = 0, n_nonfinite = 0;
};

Result run(const std::vector<float>& x, int64_t n_rows, int64_t n_cols, float scale_2,
           Nvfp4BlockSearch search, const std::vector<double>& h_blocks = {},
           int64_t h_group_rows = 0) {
  Result r;
  r.packed.assign(x.size() / 2, 0);
  r.scale.assign(x.size() / 16, 0);
  Nvfp4SearchQuantizeParams p;
  p.x = x.data();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.scale_2 = scale_2;
  p.search = search;
  p.h_blocks = h_blocks.empty() ? nullptr : h_blocks.data();
  p.h_group_rows = h_group_rows;
  p.packed = r.packed.data();
  p.scale = r.scale.data();
  p.error = &r.error;
  p.n_moved = &r.n_moved;
  p.n_nonfinite = &r.n_nonfinite;
  nvfp4_search_quantize_ref(p);
  return r;
}

// The decoded value of element i of a result.
float decoded(const Result& r, int64_t i, float scale_2) {
  const uint8_t byte = r.packed[size_t(i / 2)];
  const uint8_t code = i % 2 == 0 ? (byte & 0xF) : (byte >> 4);
  return e2m1_to_float(code) * nvfp4_block_divisor(r.scale[size_t(i / 16)], scale_2);
}

float amax_of(const std::vector<float>& x) {
  float a = 0;
  for (float v : x) a = std::max(a, std::fabs(v));
  return a;
}

}  // namespace

TEST_CASE("nvfp4 search: max gives nvfp4_quantize_ref's bytes", "[nvfp4_search]") {
  const int64_t rows = 8, cols = 256;
  const auto x = random_weights(rows * cols, 1);
  std::vector<uint16_t> bf16(x.size());
  for (size_t i = 0; i < x.size(); ++i) bf16[i] = float_to_bf16(x[i]);
  const float scale_2 = nvfp4_scale_from_amax(amax_of(x), Nvfp4ScaleDivision::kTrueDivide);
  std::vector<uint8_t> packed(x.size() / 2), scale(x.size() / 16);
  uint64_t n_nonfinite = 0;
  Nvfp4QuantizeParams p;
  p.x = bf16.data();
  p.n_rows = rows;
  p.n_cols = cols;
  p.scale_2 = &scale_2;
  p.packed = packed.data();
  p.scale = scale.data();
  p.n_nonfinite = &n_nonfinite;
  nvfp4_quantize_ref(p);
  const Result r = run(x, rows, cols, scale_2, Nvfp4BlockSearch::kMax);
  CHECK(r.packed == packed);
  CHECK(r.scale == scale);
  CHECK(r.n_moved == 0);
}

TEST_CASE("nvfp4 search: never worse than max per block, errors match the bytes",
          "[nvfp4_search]") {
  const int64_t rows = 64, cols = 512;
  const auto x = random_weights(rows * cols, 7);
  const float amax = amax_of(x);
  for (int c = 0; c < kNvfp4Scale2Candidates; ++c) {
    const float scale_2 = nvfp4_scale_2_candidate(amax, c);
    const Result max = run(x, rows, cols, scale_2, Nvfp4BlockSearch::kMax);
    const Result fos = run(x, rows, cols, scale_2, Nvfp4BlockSearch::kFourOverSix);
    const Result mse = run(x, rows, cols, scale_2, Nvfp4BlockSearch::kMse);
    CHECK(fos.error <= max.error);
    CHECK(mse.error <= fos.error);  // the sweep includes the 4-mapped code
    CHECK(fos.n_moved > 0);         // Four-over-Six wins somewhere on these blocks
    CHECK(mse.n_moved >= fos.n_moved / 2);
    for (const Result* r : {&max, &fos, &mse}) {
      double sum = 0;
      for (int64_t b = 0; b < rows * cols / kNvfp4BlockSize; ++b) {
        double block = 0, block_max = 0;
        for (int i = 0; i < kNvfp4BlockSize; ++i) {
          const int64_t k = b * kNvfp4BlockSize + i;
          const double d = double(x[size_t(k)]) - double(decoded(*r, k, scale_2));
          const double dm = double(x[size_t(k)]) - double(decoded(max, k, scale_2));
          block += d * d;
          block_max += dm * dm;
        }
        REQUIRE(block <= block_max);
        sum += block;
      }
      CHECK(sum == Approx(r->error).epsilon(1e-12));
    }
  }
}

TEST_CASE("nvfp4 search: hessian-weighted error never worse than max", "[nvfp4_search]") {
  const int64_t rows = 16, cols = 128;
  const auto x = random_weights(rows * cols, 3);
  // H = A^T A for a random A with correlated columns: symmetric positive semi-definite.
  std::mt19937 rng(5);
  std::normal_distribution<double> normal(0.0, 1.0);
  const int64_t n_samples = 64;
  std::vector<double> a(size_t(n_samples * cols));
  for (auto& v : a) v = normal(rng);
  for (int64_t s = 0; s < n_samples; ++s) {
    for (int64_t j = 1; j < cols; ++j) a[size_t(s * cols + j)] += 0.7 * a[size_t(s * cols + j - 1)];
  }
  std::vector<double> h(size_t(cols * cols), 0.0);
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t s = 0; s < n_samples; ++s) {
        h[size_t(i * cols + j)] += a[size_t(s * cols + i)] * a[size_t(s * cols + j)];
      }
    }
  }
  std::vector<double> blocks(size_t(cols / 16 * 256));
  nvfp4_hessian_diag_blocks_ref(h.data(), cols, blocks.data());
  const float scale_2 = nvfp4_scale_2_candidate(amax_of(x), 0);
  const Result max = run(x, rows, cols, scale_2, Nvfp4BlockSearch::kMax);
  const Result hes = run(x, rows, cols, scale_2, Nvfp4BlockSearch::kHessian, blocks, rows);
  // The weighted error of max's bytes, block by block, from the decoded values.
  const auto weighted = [&](const Result& r) {
    double total = 0;
    for (int64_t row = 0; row < rows; ++row) {
      for (int64_t b = 0; b < cols / 16; ++b) {
        double d[16];
        for (int i = 0; i < 16; ++i) {
          const int64_t k = row * cols + b * 16 + i;
          d[i] = double(x[size_t(k)]) - double(decoded(r, k, scale_2));
        }
        for (int i = 0; i < 16; ++i) {
          for (int j = 0; j < 16; ++j) total += d[i] * blocks[size_t((b * 16 + i) * 16 + j)] * d[j];
        }
      }
    }
    return total;
  };
  const double e_max = weighted(max), e_hes = weighted(hes);
  CHECK(e_hes <= e_max * (1 + 1e-12));
  CHECK(e_hes == Approx(hes.error).epsilon(1e-9));
  CHECK(e_hes < e_max);  // strictly better on these blocks
}

TEST_CASE("nvfp4 search: zero blocks and the four-over-six scale", "[nvfp4_search]") {
  std::vector<float> zero(32, 0.0f);
  const Result r = run(zero, 1, 32, 1.0f, Nvfp4BlockSearch::kMse);
  CHECK(r.error == 0);
  CHECK(r.scale[0] == r.scale[1]);
  // A block whose max maps to 4 exactly: 1.5x the 6-mapped scale.
  CHECK(e4m3_to_float(nvfp4_block_scale_four(4.0f, 1.0f)) == 1.0f);
  CHECK(e4m3_to_float(nvfp4_block_scale(6.0f, 1.0f)) == 1.0f);
  // The first weight_scale_2 candidate is ModelOpt's.
  CHECK(nvfp4_scale_2_candidate(3.0f, 0) ==
        nvfp4_scale_from_amax(3.0f, Nvfp4ScaleDivision::kTrueDivide));
}

TEST_CASE("nvfp4 search: NaN/Inf blocks keep the max-mapped scale and are counted",
          "[nvfp4_search]") {
  std::vector<float> x(32, 0.5f);
  x[3] = std::numeric_limits<float>::quiet_NaN();
  x[20] = std::numeric_limits<float>::infinity();
  const Result max = run(x, 1, 32, 1.0f, Nvfp4BlockSearch::kMax);
  for (const auto search : {Nvfp4BlockSearch::kFourOverSix, Nvfp4BlockSearch::kMse}) {
    const Result r = run(x, 1, 32, 1.0f, search);
    CHECK(r.n_nonfinite == 2);
    CHECK(r.scale == max.scale);
  }
}
