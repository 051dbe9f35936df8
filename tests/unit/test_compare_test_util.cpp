// tests/compare_test_util.hpp, the comparison every reference test relies on: it must count what
// differs under each policy (bits, NaN-equal, tolerance, a caller's rule), and sizes too.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"

using qf::test::count_mismatches;
using qf::test::Exact;
using qf::test::Mismatches;
using qf::test::Tolerance;

namespace {

const float kNan = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

}  // namespace

TEST_CASE("count_mismatches: exact by bits, NaN-equal on request", "[compare]") {
  const std::vector<uint8_t> a = {1, 2, 3, 4}, b = {1, 9, 3, 8};
  CHECK(count_mismatches(a, a, "codes") == 0);
  CHECK(count_mismatches(a, b, "codes") == 2);
  const std::vector<float> x = {0.0f, 1.0f, kNan, kInf};
  std::vector<float> y = {-0.0f, 1.0f, -kNan, kInf};
  CHECK(count_mismatches(x, y, "bits") == 2);                         // -0 and the NaN's sign bit
  CHECK(count_mismatches(x, y, "nan equal", Exact::kNanEqual) == 1);  // -0 still differs
  y[0] = 0.0f;
  CHECK(count_mismatches(x, y, "nan equal", Exact::kNanEqual) == 0);
}

TEST_CASE("count_mismatches: tolerance, NaN only against NaN, sizes", "[compare]") {
  const std::vector<float> want = {1.0f, 100.0f, kNan, kInf, 0.0f};
  const std::vector<float> got = {1.05f, 101.0f, kNan, kInf, 1e-8f};
  CHECK(count_mismatches(got, want, "close", Tolerance{0.06, 1e-7}) == 0);
  CHECK(count_mismatches(got, want, "close", Tolerance{0.001, 0}) == 3);  // 1.05, 101, 1e-8
  const std::vector<float> nan_vs_number = {kNan}, number = {1.0f};
  CHECK(count_mismatches(nan_vs_number, number, "nan", Tolerance{1e9, 1e9}) == 1);
  const std::vector<int64_t> longer = {1, 2, 3}, shorter = {1};
  CHECK(count_mismatches(longer, shorter, "sizes") == 2);
}

TEST_CASE("Mismatches: a caller's rule, 2-D indices", "[compare]") {
  Mismatches m("rows [row, col]", 4, 2);
  int n_ok = 0;
  for (int i = 0; i < 12; ++i) n_ok += m.check(i % 5 != 0, uint64_t(i), i, 0);
  CHECK(m.count() == 3);  // 0, 5, 10 (two of them listed)
  CHECK(n_ok == 9);
  CHECK(m.expect_close(12, 1.0, 1.1, Tolerance{0.2, 0}));
  CHECK(m.count() == 3);
}
