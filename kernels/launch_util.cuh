// What every kernel launcher shares (as llm.c's cuda_common.h): the grid arithmetic (ceil_div,
// checked grid dimensions), the alignment predicate of vectorised paths, device attributes the
// grids depend on, and through its includes the operand checks (QF_CHECK_ALIGNED,
// QF_CHECK_MULTIPLE_OF), the launch check (QF_KERNEL_CHECK) and the NVTX range (QF_NVTX_RANGE).
// Launchers follow STYLE.md 6: QF_NVTX_RANGE("launch_<op>"), validate (QF_CHECK*), grid via
// ceil_div, launch, QF_KERNEL_CHECK(). Host code only; included by kernels/*.cu and
// kernels/forward/*.cu. Does not own any kernel, any family's grid policy (stride grids,
// occupancy) or the error macros themselves (core/check.hpp, STYLE.md 4).
#pragma once
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "core/check.hpp"
#include "core/int_math.hpp"
#include "core/nvtx.hpp"

namespace qf::kernels {

using qf::ceil_div;
using qf::round_up;

// Whether p is a multiple of n_bytes (a vector load/store width): picks vectorised paths. Null
// is aligned. Launchers that require alignment check it with QF_CHECK_ALIGNED instead.
inline bool is_aligned(const void* p, uintptr_t n_bytes) {
  return reinterpret_cast<uintptr_t>(p) % n_bytes == 0;
}

// A grid x dimension of n_blocks blocks: checked to lie in [1, INT_MAX] (the CUDA limit is
// 2^31 - 1), naming `what` otherwise.
inline unsigned grid_x(int64_t n_blocks, const char* what) {
  QF_CHECK(n_blocks > 0 && n_blocks <= INT_MAX, what, ": grid of", n_blocks, "blocks");
  return static_cast<unsigned>(n_blocks);
}

// Streaming multiprocessors of the current device.
inline int device_sm_count() {
  int device = 0, n_sms = 0;
  QF_CUDA_CHECK(cudaGetDevice(&device), "current device");
  QF_CUDA_CHECK(cudaDeviceGetAttribute(&n_sms, cudaDevAttrMultiProcessorCount, device),
                "multiprocessor count");
  return n_sms;
}

// The most dynamic shared memory one block of the current device may opt in to, in bytes.
inline int device_max_dynamic_smem() {
  int device = 0, n_bytes = 0;
  QF_CUDA_CHECK(cudaGetDevice(&device), "current device");
  QF_CUDA_CHECK(cudaDeviceGetAttribute(&n_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                "shared memory attribute");
  return n_bytes;
}

}  // namespace qf::kernels
