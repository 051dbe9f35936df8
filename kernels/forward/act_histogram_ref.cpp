// CPU reference of act_histogram.cuh: numerics::act_hist_add, one logical row at a time.
#include <algorithm>

#include "core/check.hpp"
#include "kernels/forward/act_histogram.cuh"

namespace qf::kernels {

void act_hist_ref(const ActHistParams& p) {
  QF_CHECK(p.n_rows >= 0 && p.n_cols >= 0, "act_hist shape", p.n_rows, "x", p.n_cols);
  QF_CHECK(p.segment_offsets == nullptr || p.n_segments > 0, "act_hist: segments without count");
  const int64_t n_rows = p.segment_offsets != nullptr
                             ? std::min<int64_t>(p.n_rows, p.segment_offsets[p.n_segments])
                             : p.n_rows;
  int64_t slot = 0;
  for (int64_t i = 0; i < n_rows; ++i) {
    if (p.segment_offsets != nullptr) {
      while (slot < p.n_segments && p.segment_offsets[slot + 1] <= i) ++slot;
    }
    const int64_t src = p.row_index != nullptr ? p.row_index[i] : i;
    numerics::act_hist_add(p.hist + slot * numerics::kActHistBins, p.x + src * p.n_cols, p.n_cols);
  }
}

}  // namespace qf::kernels
