// The lower BF16 planes of FP32 activations (numerics::float_to_bf16_planes): with
// `--calib-precision fp32` every linear input x reaches its GEMMs as hi + mid + lo, three BF16
// GEMMs accumulating in FP32, so the CUDA forward follows the FP32 reference (and its routing)
// instead of BF16-rounded inputs. The hi plane is the BF16 copy the cast/gather/SwiGLU kernels
// already write; this op writes mid and lo. Owns that op; not which buffers hold the planes.
#pragma once
#include <cstdint>

#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qf::kernels {

// mid[r, :], lo[r, :] of row x[src(r), :] with src(r) = row_index ? row_index[r] : r
// (row_index: the gather's row -> token map; rows past n_rows are not touched, nor rows r >=
// *row_count when row_count is given: the MoE dispatch knows its row count on the device only).
struct Bf16PlanesParams {
  const float* x = nullptr;            // [*, n_cols] FP32
  const int32_t* row_index = nullptr;  // [n_rows] or null
  const int32_t* row_count = nullptr;  // [1] or null (all n_rows)
  int64_t n_rows = 0, n_cols = 0;
  uint16_t* mid = nullptr;  // [n_rows, n_cols]
  uint16_t* lo = nullptr;   // [n_rows, n_cols]
};

void bf16_planes_ref(const Bf16PlanesParams& p);  // host pointers

#ifdef QF_HAVE_CUDA
// Device pointers. Validates, launches on stream, no sync.
void launch_bf16_planes(const Bf16PlanesParams& p, cudaStream_t stream);
#endif

}  // namespace qf::kernels
