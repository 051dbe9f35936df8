// RAII owners of CUDA resources (CUDA builds only; include from .cu/.cpp compiled with CUDA).
// Owns: DeviceBuffer<T>, PinnedBuffer, CudaStream, CudaEvent. Does not own device choice.
#pragma once
#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "core/check.hpp"
#include "core/log.hpp"

namespace qf {

// Device memory of n_elems T; grow() reallocates (contents lost) when more is needed.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n_elems) { grow(n_elems); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), n_elems_(std::exchange(other.n_elems_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      ptr_ = std::exchange(other.ptr_, nullptr);
      n_elems_ = std::exchange(other.n_elems_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void grow(size_t n_elems) {
    if (n_elems <= n_elems_) return;
    release();
    void* ptr = nullptr;
    QF_CUDA_CHECK(cudaMalloc(&ptr, n_elems * sizeof(T)), "cudaMalloc of", n_elems * sizeof(T),
                  "bytes");
    ptr_ = static_cast<T*>(ptr);
    n_elems_ = n_elems;
  }
  T* get() const { return ptr_; }
  size_t n_elems() const { return n_elems_; }

 private:
  void release() noexcept {
    if (!ptr_) return;
    const cudaError_t rc = cudaFree(ptr_);
    if (rc != cudaSuccess) log_error("cudaFree failed: ", cudaGetErrorString(rc));
    ptr_ = nullptr;
    n_elems_ = 0;
  }
  T* ptr_ = nullptr;
  size_t n_elems_ = 0;
};

// Page-locked host memory (fast, asynchronous H2D/D2H); grow() keeps the contents only if no
// reallocation is needed. Allocation is slow (the pages are pinned), so callers keep one.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { release(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void grow(size_t n_bytes) {
    if (n_bytes <= n_bytes_) return;
    release();
    QF_CUDA_CHECK(cudaHostAlloc(&ptr_, n_bytes, cudaHostAllocDefault), "cudaHostAlloc of", n_bytes,
                  "bytes");
    n_bytes_ = n_bytes;
  }
  uint8_t* get() const { return static_cast<uint8_t*>(ptr_); }
  size_t n_bytes() const { return n_bytes_; }

 private:
  void release() noexcept {
    if (!ptr_) return;
    const cudaError_t rc = cudaFreeHost(ptr_);
    if (rc != cudaSuccess) log_error("cudaFreeHost failed: ", cudaGetErrorString(rc));
    ptr_ = nullptr;
    n_bytes_ = 0;
  }
  void* ptr_ = nullptr;
  size_t n_bytes_ = 0;
};

// A non-blocking stream on the current device.
class CudaStream {
 public:
  CudaStream() {
    QF_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream create");
  }
  ~CudaStream() {
    if (!stream_) return;
    const cudaError_t rc = cudaStreamDestroy(stream_);
    if (rc != cudaSuccess) log_error("cudaStreamDestroy failed: ", cudaGetErrorString(rc));
  }
  CudaStream(CudaStream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  CudaStream& operator=(CudaStream&&) = delete;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return stream_; }
  void synchronize(const char* what) const { QF_CUDA_CHECK(cudaStreamSynchronize(stream_), what); }

 private:
  cudaStream_t stream_ = nullptr;
};

// An event on the current device: ordering-only (cudaEventDisableTiming) unless other flags
// are given (0: a timing event for cudaEventElapsedTime).
class CudaEvent {
 public:
  CudaEvent() : CudaEvent(cudaEventDisableTiming) {}
  explicit CudaEvent(unsigned flags) {
    QF_CUDA_CHECK(cudaEventCreateWithFlags(&event_, flags), "event create");
  }
  ~CudaEvent() {
    if (!event_) return;
    const cudaError_t rc = cudaEventDestroy(event_);
    if (rc != cudaSuccess) log_error("cudaEventDestroy failed: ", cudaGetErrorString(rc));
  }
  CudaEvent(CudaEvent&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
  CudaEvent& operator=(CudaEvent&&) = delete;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace qf
#endif  // QF_HAVE_CUDA
