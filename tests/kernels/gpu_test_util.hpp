// Host <-> device copies for the GPU tests (tests/kernels): one version of the helpers every
// kernel test needs. Downloads synchronize the device first, so a test reads what the kernels
// it launched wrote. CUDA builds only.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "core/check.hpp"
#include "core/cuda_raii.hpp"

namespace qf::test {

// A device copy of src, at least min_elems (and 1) elements long.
template <typename T>
DeviceBuffer<T> to_device(const std::vector<T>& src, size_t min_elems = 0) {
  DeviceBuffer<T> dst(std::max<size_t>({src.size(), min_elems, 1}));
  if (!src.empty()) {
    QF_CUDA_CHECK(cudaMemcpy(dst.get(), src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice),
                  "test upload");
  }
  return dst;
}

// dst[offset, offset + src.size()) = src.
template <typename T>
void upload(const DeviceBuffer<T>& dst, const std::vector<T>& src, size_t offset = 0) {
  if (src.empty()) return;
  QF_CUDA_CHECK(
      cudaMemcpy(dst.get() + offset, src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice),
      "test upload");
}

// n_elems elements from device memory src.
template <typename T>
std::vector<T> download(const T* src, size_t n_elems) {
  std::vector<T> host(n_elems);
  QF_CUDA_CHECK(cudaDeviceSynchronize(), "test sync");
  if (n_elems) {
    QF_CUDA_CHECK(cudaMemcpy(host.data(), src, n_elems * sizeof(T), cudaMemcpyDeviceToHost),
                  "test download");
  }
  return host;
}

template <typename T>
std::vector<T> download(const DeviceBuffer<T>& src, size_t n_elems, size_t offset = 0) {
  return download(static_cast<const T*>(src.get()) + offset, n_elems);
}

}  // namespace qf::test
