// numerics::float_to_bf16_planes and its reference loop (kernels/forward/bf16_planes_ref.cpp):
// three BF16 planes carry a float to its last bit or two, each difference is exact, specials
// travel in hi, and the gather form reads rows through the index.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "kernels/forward/bf16_planes.cuh"
#include "numerics/bf16.hpp"

using namespace qf;
using numerics::bf16_to_float;
using numerics::float_to_bf16_planes;

namespace {

double sum_of(const numerics::Bf16Planes& p) {
  return double(bf16_to_float(p.hi)) + double(bf16_to_float(p.mid)) + double(bf16_to_float(p.lo));
}

}  // namespace

TEST_CASE("bf16 planes: hi + mid + lo equals x to 2^-22 relative", "[bf16_planes]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-140, 120);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::ldexp(normal(rng), exponent(rng));
    const auto p = float_to_bf16_planes(x);
    CHECK(p.hi == numerics::float_to_bf16_canonical(x));  // the plane the cast kernels write
    const double err = std::fabs(double(x) - sum_of(p));
    // 24 significant bits in three 8-bit planes; a remainder below BF16's normal range keeps
    // BF16's subnormal step (2^-133), irrelevant for activations.
    REQUIRE(err <= std::ldexp(std::fabs(double(x)), -22) + std::ldexp(1.0, -134));
    // Each step is exact: mid is bf16 of the exact remainder x - hi.
    const float r1 = x - bf16_to_float(p.hi);
    CHECK(double(r1) == double(x) - double(bf16_to_float(p.hi)));
    CHECK(p.mid == numerics::float_to_bf16(r1));
  }
}

TEST_CASE("bf16 planes: values BF16 holds exactly have zero lower planes", "[bf16_planes]") {
  for (const float x : {0.0f, -0.0f, 1.0f, -2.5f, 448.0f, 0.0078125f, 3.3895314e38f}) {
    const auto p = float_to_bf16_planes(x);
    CHECK(bf16_to_float(p.hi) == x);
    CHECK(p.mid == 0);
    CHECK(p.lo == 0);
  }
}

TEST_CASE("bf16 planes: NaN, Inf and a hi that overflows keep lower planes zero", "[bf16_planes]") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float near_max = std::numeric_limits<float>::max();  // rounds to Inf in BF16
  for (const float x : {inf, -inf, nan, near_max, -near_max}) {
    const auto p = float_to_bf16_planes(x);
    CHECK(p.mid == 0);
    CHECK(p.lo == 0);
  }
  CHECK(float_to_bf16_planes(nan).hi == 0x7FC0);
  CHECK(std::isinf(bf16_to_float(float_to_bf16_planes(near_max).hi)));
}

TEST_CASE("bf16_planes_ref: row-major planes, rows read through the gather index",
          "[bf16_planes]") {
  const int64_t n_cols = 5;
  std::vector<float> x(4 * n_cols);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 1.0f + 0.001953125f * float(i) + 1e-7f * float(i);
  const std::vector<int32_t> index = {3, 0, 2};
  std::vector<uint16_t> mid(3 * n_cols, 0xFFFF), lo(3 * n_cols, 0xFFFF);
  kernels::Bf16PlanesParams p;
  p.x = x.data();
  p.row_index = index.data();
  p.n_rows = 3;
  p.n_cols = n_cols;
  p.mid = mid.data();
  p.lo = lo.data();
  kernels::bf16_planes_ref(p);
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t c = 0; c < n_cols; ++c) {
      const auto want = float_to_bf16_planes(x[index[r] * n_cols + c]);
      CHECK(mid[r * n_cols + c] == want.mid);
      CHECK(lo[r * n_cols + c] == want.lo);
    }
  }
}
