// Integer rounding helpers shared by host code and CUDA launchers: the one ceil_div of the
// project (launch grids, scale-tile counts, per-rank shares). Does not own overflow checks
// (callers check their ranges with QF_CHECK).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define QF_HOST_DEVICE_ __host__ __device__
#else
#define QF_HOST_DEVICE_
#endif

namespace qf {

// ceil(a / b) for a >= 0, b > 0.
QF_HOST_DEVICE_ constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The smallest multiple of b that is >= a, for a >= 0, b > 0.
QF_HOST_DEVICE_ constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

static_assert(ceil_div(0, 4) == 0 && ceil_div(1, 4) == 1 && ceil_div(8, 4) == 2 &&
                  ceil_div(9, 4) == 3 && round_up(33, 32) == 64 && round_up(0, 32) == 0,
              "ceil_div / round_up");

}  // namespace qf

#undef QF_HOST_DEVICE_
