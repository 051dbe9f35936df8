// GPU vs CPU reference for the |x| histogram kernel (kernels/forward/act_histogram.cuh): counts
// must be equal, bin for bin, on inputs with zeros of both signs, denormals, values at and just
// below every bin edge, huge values, +-Inf, NaN and random bit patterns; for plain rows (one slot,
// counts added to what the slot holds, neighbours untouched) and for the MoE's expert-sorted
// gathered rows (row_index + segment_offsets, empty experts, rows past the last offset skipped).
// Needs a GPU ([gpu]).
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
#include "kernels/forward/act_histogram.cuh"
#include "numerics/host_device.hpp"

using namespace qf;
using numerics::bits_to_float;
using qf::test::count_mismatches;
using qf::test::download;
using qf::test::Exact;
using qf::test::to_device;
using qf::test::upload;
using namespace qf::kernels;
using numerics::kActHistBins;

namespace {

// Every kind of float the binning treats specially, mixed with ordinary activations.
std::vector<float> awkward_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<uint32_t> bits;
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    const float sign = (bits(rng) & 1) ? -1.0f : 1.0f;
    const uint32_t kind = bits(rng) % 100;
    if (kind < 8) {
      x[i] = sign * 0.0f;
    } else if (kind < 13) {
      x[i] = bits_to_float((bits(rng) & 0x807FFFFFu) | 1u);  // denormal
    } else if (kind < 18) {
      const float huge[] = {1e30f, std::numeric_limits<float>::max(), std::ldexp(1.0f, 24),
                            std::nextafter(std::ldexp(1.0f, 24), 0.0f), 3e38f};
      x[i] = sign * huge[bits(rng) % 5];
    } else if (kind < 20) {
      x[i] = sign * inf;
    } else if (kind < 21) {
      x[i] = std::numeric_limits<float>::quiet_NaN();
    } else if (kind < 36) {
      // A bin edge 2^e * (1 + j/8) or the float just below it, over the whole range and past it.
      const int e = static_cast<int>(bits(rng) % 56) - 28;
      const float edge = std::ldexp(1.0f + float(bits(rng) % 8) / 8.0f, e);
      x[i] = sign * ((bits(rng) & 1) ? edge : std::nextafter(edge, 0.0f));
    } else if (kind < 56) {
      x[i] = bits_to_float(bits(rng));  // any pattern, NaNs included
    } else {
      x[i] = sign * std::exp2(-30.0f + 60.0f * unit(rng));  // log-uniform activations
    }
  }
  return x;
}

std::vector<int64_t> random_counts(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> count(0, int64_t{1} << 40);
  std::vector<int64_t> c(n);
  for (auto& v : c) v = count(rng);
  return c;
}

}  // namespace

TEST_CASE("act_histogram gpu: plain rows equal the reference exactly", "[gpu][act_histogram]") {
  struct Shape {
    int64_t n_rows, n_cols;
  };
  // Narrow rows (many rows per block), V4-like widths, and rows wider than a block's share
  // (one row per block).
  const Shape shapes[] = {{1, 1},     {3, 5},       {7, 33},    {1000, 64},
                          {37, 4096}, {2048, 4096}, {4, 70001}, {129, 2048}};
  uint32_t seed = 1;
  for (const Shape& s : shapes) {
    const std::vector<float> x = awkward_values(size_t(s.n_rows * s.n_cols), seed++);
    // Four slots; the histogram goes to slot 2 on top of random counts, the others must stay.
    const std::vector<int64_t> start = random_counts(4 * kActHistBins, seed++);
    std::vector<int64_t> ref = start;
    ActHistParams p;
    p.x = x.data();
    p.n_rows = s.n_rows;
    p.n_cols = s.n_cols;
    p.hist = ref.data() + 2 * kActHistBins;
    act_hist_ref(p);
    auto x_dev = to_device(x);
    auto hist_dev = to_device(start);
    p.x = x_dev.get();
    p.hist = hist_dev.get() + 2 * kActHistBins;
    launch_act_hist(p, nullptr);
    const std::vector<int64_t> gpu = download(hist_dev, start.size());
    INFO(s.n_rows << " x " << s.n_cols);
    REQUIRE(count_mismatches(gpu, ref, "counts [slot, bin]", Exact::kBits, kActHistBins) == 0);
    // The reference really counted every value once (so the comparison is not vacuous).
    int64_t added = 0;
    for (int b = 0; b < kActHistBins; ++b)
      added += ref[2 * kActHistBins + b] - start[2 * kActHistBins + b];
    REQUIRE(added == s.n_rows * s.n_cols);
  }
}

TEST_CASE("act_histogram gpu: launches accumulate; large counts are exact",
          "[gpu][act_histogram]") {
  // 5M zeros and 3M copies of one value: one bin each, counts far beyond a block's share.
  const int64_t n_rows = 2000, n_cols = 4000;
  std::vector<float> x(size_t(n_rows * n_cols), 0.0f);
  std::fill(x.begin() + 5000000, x.end(), -1.5f);
  auto x_dev = to_device(x);
  auto hist_dev = to_device(std::vector<int64_t>(kActHistBins, 0));
  ActHistParams p;
  p.x = x_dev.get();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.hist = hist_dev.get();
  launch_act_hist(p, nullptr);
  launch_act_hist(p, nullptr);
  const std::vector<int64_t> gpu = download(hist_dev, kActHistBins);
  std::vector<int64_t> want(kActHistBins, 0);
  want[0] = 2 * 5000000;
  want[numerics::act_hist_bin(1.5f)] = 2 * 3000000;
  REQUIRE(gpu == want);
}

TEST_CASE("act_histogram gpu: expert-sorted gathered rows equal the reference exactly",
          "[gpu][act_histogram]") {
  for (const int64_t dim : {int64_t{64}, int64_t{4096}, int64_t{1000}}) {
    const int64_t n_tokens = 301, top_k = 6, n_exp = 37;
    std::mt19937 rng(static_cast<uint32_t>(dim));
    // Assignments to a subset of the experts (others empty); about 1 in 20 dropped, so the
    // last offset is below n_tokens * top_k and the rows past it must be skipped.
    std::vector<std::vector<int32_t>> rows_of(n_exp);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t s = 0; s < top_k; ++s) {
        const int32_t e = static_cast<int32_t>(rng() % n_exp);
        if (e % 5 == 3 || rng() % 20 == 0) continue;
        rows_of[e].push_back(static_cast<int32_t>(t));
      }
    }
    std::vector<int32_t> offsets(n_exp + 1, 0), row_token;
    for (int64_t e = 0; e < n_exp; ++e) {
      row_token.insert(row_token.end(), rows_of[e].begin(), rows_of[e].end());
      offsets[e + 1] = static_cast<int32_t>(row_token.size());
    }
    const int64_t n_rows = n_tokens * top_k;
    REQUIRE(int64_t(row_token.size()) < n_rows);
    while (int64_t(row_token.size()) < n_rows) row_token.push_back(int32_t(rng() % n_tokens));
    const std::vector<float> x = awkward_values(size_t(n_tokens * dim), uint32_t(dim) + 7);
    // Slots: [2 unrelated][n_exp experts][1 unrelated]; the experts start at slot 2.
    const std::vector<int64_t> start = random_counts(size_t(n_exp + 3) * kActHistBins, 99);
    std::vector<int64_t> ref = start;
    ActHistParams p;
    p.x = x.data();
    p.n_rows = n_rows;
    p.n_cols = dim;
    p.row_index = row_token.data();
    p.segment_offsets = offsets.data();
    p.n_segments = n_exp;
    p.hist = ref.data() + 2 * kActHistBins;
    act_hist_ref(p);
    auto x_dev = to_device(x);
    auto rows_dev = to_device(row_token);
    auto offsets_dev = to_device(offsets);
    auto hist_dev = to_device(start);
    p.x = x_dev.get();
    p.row_index = rows_dev.get();
    p.segment_offsets = offsets_dev.get();
    p.hist = hist_dev.get() + 2 * kActHistBins;
    launch_act_hist(p, nullptr);
    const std::vector<int64_t> gpu = download(hist_dev, start.size());
    INFO("dim " << dim);
    REQUIRE(count_mismatches(gpu, ref, "counts [slot, bin]", Exact::kBits, kActHistBins) == 0);
    // Empty experts got nothing; each expert got exactly its rows' values.
    for (int64_t e = 0; e < n_exp; ++e) {
      int64_t added = 0;
      for (int b = 0; b < kActHistBins; ++b) {
        const size_t i = size_t(2 + e) * kActHistBins + b;
        added += ref[i] - start[i];
      }
      REQUIRE(added == int64_t(rows_of[e].size()) * dim);
    }
  }
}
