// Per-tensor digest table (see tensor_digests.hpp).
#include "formats/tensor_digests.hpp"

#include "core/check.hpp"

namespace qf::formats {

TensorDigests::TensorDigests(size_t n_tensors)
    : n_(n_tensors),
      digests_(new std::atomic<uint64_t>[n_tensors]),
      known_(new std::atomic<bool>[n_tensors]) {
  for (size_t i = 0; i < n_; ++i) {
    digests_[i].store(0, std::memory_order_relaxed);
    known_[i].store(false, std::memory_order_relaxed);
  }
}

void TensorDigests::note(size_t tensor, uint64_t digest) {
  QF_CHECK(tensor < n_, "tensor digest index", tensor, "out of range", n_);
  digests_[tensor].store(digest, std::memory_order_relaxed);
  known_[tensor].store(true, std::memory_order_release);
}

bool TensorDigests::find(size_t tensor, uint64_t* digest) const {
  QF_CHECK(tensor < n_, "tensor digest index", tensor, "out of range", n_);
  if (!known_[tensor].load(std::memory_order_acquire)) return false;
  *digest = digests_[tensor].load(std::memory_order_relaxed);
  return true;
}

bool TensorDigests::all(std::vector<uint64_t>* digests) const {
  digests->assign(n_, 0);
  for (size_t i = 0; i < n_; ++i) {
    if (!find(i, &(*digests)[i])) return false;
  }
  return true;
}

}  // namespace qf::formats
