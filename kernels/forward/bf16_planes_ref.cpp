// CPU reference of bf16_planes.cuh: one numerics::float_to_bf16_planes per element.
#include <algorithm>

#include "core/check.hpp"
#include "kernels/forward/bf16_planes.cuh"
#include "numerics/bf16.hpp"

namespace qf::kernels {

void bf16_planes_ref(const Bf16PlanesParams& p) {
  QF_CHECK(p.n_rows >= 0 && p.n_cols >= 0, "bf16_planes shape", p.n_rows, "x", p.n_cols);
  QF_CHECK(p.n_rows == 0 || p.n_cols == 0 || (p.x && p.mid && p.lo),
           "bf16_planes needs x, mid, lo");
  const int64_t n_rows =
      p.row_count != nullptr ? std::min<int64_t>(p.n_rows, *p.row_count) : p.n_rows;
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t src = p.row_index != nullptr ? p.row_index[r] : r;
    for (int64_t c = 0; c < p.n_cols; ++c) {
      const numerics::Bf16Planes planes = numerics::float_to_bf16_planes(p.x[src * p.n_cols + c]);
      p.mid[r * p.n_cols + c] = planes.mid;
      p.lo[r * p.n_cols + c] = planes.lo;
    }
  }
}

}  // namespace qf::kernels
