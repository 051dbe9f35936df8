// Shared by the NVFP4 tests and the golden-data tool: the reference amax of a BF16 tensor.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/nvfp4_quantize.cuh"

namespace qf::test {

// max |x| over BF16 bits via nvfp4_amax_ref; NaN/Inf elements are counted in *n_nonfinite.
inline float bf16_amax_ref(const std::vector<uint16_t>& x, uint64_t* n_nonfinite = nullptr) {
  float amax = 0;
  uint64_t n_bad = 0;
  kernels::Nvfp4AmaxParams p;
  p.x = x.data();
  p.n_elems = static_cast<int64_t>(x.size());
  p.amax = &amax;
  p.n_nonfinite = &n_bad;
  kernels::nvfp4_amax_ref(p);
  if (n_nonfinite) *n_nonfinite = n_bad;
  return amax;
}

}  // namespace qf::test
