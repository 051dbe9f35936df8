// A device workspace as ONE table of named buffers {name, element size, bytes held}: callers
// declare every buffer once, grow an entry to what a call needs (never shrinking, so it holds
// the largest request seen), and the size report reads the same table, so no buffer can be
// allocated without being counted. Owns the buffers. Does not own sizing policy (each request
// is computed by the caller) or any stream (growing reallocates with cudaFree/cudaMalloc).
#pragma once
#ifdef QF_HAVE_CUDA
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/check.hpp"
#include "core/cuda_raii.hpp"

namespace qf::gpu {

class DeviceWorkspace {
 public:
  using Id = int;
  struct Entry {
    std::string name;
    size_t elem_bytes = 0;
    uint64_t n_bytes = 0;  // held now
  };

  // Adds buffer `name` of elements of `elem_bytes` bytes, empty until first sized; returns its
  // id (ids are 0, 1, ... in declaration order).
  Id declare(std::string name, size_t elem_bytes) {
    slots_.push_back(Slot{std::move(name), elem_bytes, DeviceBuffer<uint8_t>()});
    return static_cast<Id>(slots_.size() - 1);
  }

  // Buffer `id` as at least max(n_elems, 1) elements of T (T must match the declared element
  // size); reallocated, contents lost, only when larger than what it holds.
  template <typename T>
  T* sized(Id id, int64_t n_elems) {
    Slot& s = slot(id, sizeof(T));
    s.buf.grow(static_cast<size_t>(std::max<int64_t>(n_elems, 1)) * sizeof(T));
    return reinterpret_cast<T*>(s.buf.get());
  }
  // Buffer `id` as last sized (null if never).
  template <typename T>
  T* get(Id id) const {
    return reinterpret_cast<T*>(slot(id, sizeof(T)).buf.get());
  }
  size_t n_elems(Id id) const {
    const Slot& s = slot(id, 0);
    return s.buf.n_elems() / s.elem_bytes;
  }

  // The table in declaration order, with the bytes each buffer holds now.
  std::vector<Entry> entries() const {
    std::vector<Entry> out;
    out.reserve(slots_.size());
    for (const Slot& s : slots_) out.push_back({s.name, s.elem_bytes, s.buf.n_elems()});
    return out;
  }
  // Sum of entries().n_bytes.
  uint64_t n_bytes() const {
    uint64_t n = 0;
    for (const Slot& s : slots_) n += s.buf.n_elems();
    return n;
  }

 private:
  struct Slot {
    std::string name;
    size_t elem_bytes;
    DeviceBuffer<uint8_t> buf;  // n_elems() is its size in bytes
  };
  // elem_bytes 0: any element type.
  const Slot& slot(Id id, size_t elem_bytes) const {
    QF_CHECK(id >= 0 && static_cast<size_t>(id) < slots_.size(), "workspace: no buffer", id);
    const Slot& s = slots_[static_cast<size_t>(id)];
    QF_CHECK(elem_bytes == 0 || elem_bytes == s.elem_bytes, "workspace buffer", s.name, "holds",
             s.elem_bytes, "-byte elements, not", elem_bytes);
    return s;
  }
  Slot& slot(Id id, size_t elem_bytes) {
    return const_cast<Slot&>(static_cast<const DeviceWorkspace*>(this)->slot(id, elem_bytes));
  }
  std::vector<Slot> slots_;
};

}  // namespace qf::gpu
#endif  // QF_HAVE_CUDA
