// The tests' one element-by-element comparison of a result against its reference (llm.c's
// validate_result): counts the elements that differ and shows the first few, with their index
// and both values, on the assertion that checks the count. Used by the CPU reference tests
// (tests/unit) and the GPU-vs-reference tests (tests/kernels) alike.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "catch_compat.hpp"

namespace qf::test {

// How an element must equal its reference. kBits: the same bit pattern (codes, scales, bytes,
// integer results, floats a kernel must reproduce exactly; -0 differs from +0). kNanEqual: the
// same, except that any NaN matches any NaN (NaN payloads are not part of the contract).
enum class Exact { kBits, kNanEqual };

// Floats within |got - want| <= abs + rel * |want|. NaN matches only NaN; an infinity only the
// same infinity.
struct Tolerance {
  double rel = 0;
  double abs = 0;
};

inline bool within(double got, double want, Tolerance tol) {
  if (std::isnan(got) || std::isnan(want)) return std::isnan(got) && std::isnan(want);
  if (got == want) return true;  // also equal infinities
  return std::fabs(got - want) <= tol.abs + tol.rel * std::fabs(want);
}

template <typename T>
bool same_bits(const T& got, const T& want, Exact exact = Exact::kBits) {
  static_assert(std::is_trivially_copyable_v<T>, "compared by bits");
  if (std::memcmp(&got, &want, sizeof(T)) == 0) return true;
  if constexpr (std::is_floating_point_v<T>) {
    return exact == Exact::kNanEqual && std::isnan(got) && std::isnan(want);
  }
  return false;
}

// Counts mismatches and lists the first `max_listed` through Catch2's UNSCOPED_INFO, which the
// next assertion prints if it fails; so assert on count() right after the loop:
//   Mismatches m("e4m3 encode of bf16 code");
//   for (uint32_t c = 0; c < 65536; ++c) m.expect(c, got(c), want(c));
//   CHECK(m.count() == 0);
// An element is listed as `what[index]` (or `what at [row, col]` when n_cols > 0; name the axes
// in `what`) with got and want, integers in decimal and hex, floats to 9 digits and their bits.
class Mismatches {
 public:
  explicit Mismatches(std::string what, int64_t n_cols = 0, size_t max_listed = 5)
      : what_(std::move(what)), n_cols_(n_cols), max_listed_(max_listed) {}

  // Element `index` matches when `ok` (a rule of the caller's); returns ok.
  template <typename T>
  bool check(bool ok, uint64_t index, const T& got, const T& want) {
    if (ok) return true;
    if (n_bad_++ < max_listed_) {
      std::ostringstream out;
      out << what_;
      if (n_cols_ > 0) {
        out << " at [" << index / uint64_t(n_cols_) << ", " << index % uint64_t(n_cols_) << "]";
      } else {
        out << "[" << index << "]";
      }
      out << " got " << shown(got) << " want " << shown(want);
      UNSCOPED_INFO(out.str());
    }
    return false;
  }
  template <typename T>
  bool expect(uint64_t index, const T& got, const T& want, Exact exact = Exact::kBits) {
    return check(same_bits(got, want, exact), index, got, want);
  }
  template <typename T>
  bool expect_close(uint64_t index, T got, T want, Tolerance tol) {
    static_assert(std::is_floating_point_v<T>, "a tolerance compares floats");
    return check(within(double(got), double(want), tol), index, got, want);
  }
  // Elements only one side has (the sizes differ) count as mismatches.
  void count_missing(size_t n_got, size_t n_want) {
    if (n_got == n_want) return;
    n_bad_ += n_got > n_want ? n_got - n_want : n_want - n_got;
    UNSCOPED_INFO(what_ << ": got " << n_got << " elements, want " << n_want);
  }

  size_t count() const { return n_bad_; }

 private:
  template <typename T>
  static std::string shown(const T& v) {
    std::ostringstream out;
    if constexpr (std::is_floating_point_v<T>) {
      out.precision(9);
      uint64_t bits = 0;
      std::memcpy(&bits, &v, sizeof(T));
      out << v << " (0x" << std::hex << bits << ")";
    } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      out << +v << " (0x" << std::hex << +static_cast<std::make_unsigned_t<T>>(v) << ")";
    } else {
      out << v;
    }
    return out.str();
  }

  std::string what_;
  int64_t n_cols_;
  size_t max_listed_;
  size_t n_bad_ = 0;
};

// Whole vectors: CHECK(count_mismatches(got, want, "scale") == 0).
template <typename T>
size_t count_mismatches(const std::vector<T>& got, const std::vector<T>& want,
                        const std::string& what, Exact exact = Exact::kBits, int64_t n_cols = 0) {
  Mismatches m(what, n_cols);
  m.count_missing(got.size(), want.size());
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    m.expect(i, got[i], want[i], exact);
  return m.count();
}

template <typename T>
size_t count_mismatches(const std::vector<T>& got, const std::vector<T>& want,
                        const std::string& what, Tolerance tol, int64_t n_cols = 0) {
  Mismatches m(what, n_cols);
  m.count_missing(got.size(), want.size());
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    m.expect_close(i, got[i], want[i], tol);
  }
  return m.count();
}

}  // namespace qf::test
