// |x| histograms of linear inputs for the CUDA calibration forward (--act-scale percentile/mse):
// counts in the fixed log2 bins of numerics/act_hist_bins.hpp, added into device "histogram
// slots" [n_slots, kActHistBins] beside the amax slots of forward_ops.cuh. Integer counts from
// the float bits, so the GPU and the CPU reference agree exactly on the same input.
// Declares params, the CPU reference (act_histogram_ref.cpp, numerics::act_hist_add) and the
// launcher (CUDA builds). Does not own: the slots' layout (gpu::ObservationSlots) or clearing.
#pragma once
#include <cstdint>

#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#include "numerics/act_hist_bins.hpp"

namespace qf::kernels {

// For each logical row i < n_rows: the values x[src(i), 0..n_cols) with src(i) = row_index[i]
// (row_index null: i) are counted into hist[slot(i) * kActHistBins + bin]. slot(i): null
// segment_offsets: 0 for every row; otherwise the s with segment_offsets[s] <= i <
// segment_offsets[s + 1] (s < n_segments; empty segments allowed), and rows i >=
// segment_offsets[n_segments] are skipped, so n_rows may be an upper bound (the MoE dispatch's
// expert-sorted rows: row_index = row_token, segment_offsets = expert_offsets, both read on the
// device). Counts are added to what hist holds.
struct ActHistParams {
  const float* x = nullptr;  // [rows of x, n_cols] FP32
  int64_t n_rows = 0, n_cols = 0;
  const int32_t* row_index = nullptr;        // [n_rows] or null
  const int32_t* segment_offsets = nullptr;  // [n_segments + 1] ascending from 0, or null
  int64_t n_segments = 0;
  int64_t* hist = nullptr;  // [max slot + 1, kActHistBins]
};

// Host pointers (segment_offsets and row_index on the host too).
void act_hist_ref(const ActHistParams& p);

#ifdef QF_HAVE_CUDA
// Device pointers; validates shapes (QF_CHECK), launches on stream, no sync.
void launch_act_hist(const ActHistParams& p, cudaStream_t stream);
#endif

}  // namespace qf::kernels
