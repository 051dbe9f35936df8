// The XXH64 of each tensor of one safetensors file, noted as whole tensors pass through reads
// or copies (issue 19: the source's content digest comes from the job's own reads, not from a
// second pass over every file). Owns: the lock-free table and the "every tensor known" test.
// Does not own: who reads, the digest rule (formats/shard_digest.hpp).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace qf::formats {

// Fixed size; note/find are safe from any number of threads. A tensor noted twice keeps the
// last digest (equal, unless the file changed under the job: the stat check catches that).
class TensorDigests {
 public:
  explicit TensorDigests(size_t n_tensors);
  size_t size() const { return n_; }
  void note(size_t tensor, uint64_t digest);
  bool find(size_t tensor, uint64_t* digest) const;
  // Every digest in tensor order, or false when one is missing.
  bool all(std::vector<uint64_t>* digests) const;

 private:
  size_t n_ = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> digests_;
  std::unique_ptr<std::atomic<bool>[]> known_;
};

}  // namespace qf::formats
