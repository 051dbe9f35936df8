// SafetensorsReader: opens one .safetensors file, validates it fully, reads tensor bytes by pread.
// Owns: the file descriptor and length-prefix checks. Does not own: header rules
// (safetensors_header.cpp) or multi-shard checkpoints (CheckpointDir).
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "formats/posix_file.hpp"
#include "formats/safetensors_header.hpp"
#include "formats/tensor_digests.hpp"

namespace qf::formats {

// Move-only RAII. Reads use pread(2) on one fd, so const methods are safe to call from several
// threads at once. No mmap: reads are large and sequential, and pread errors are catchable
// where a SIGBUS on a truncated mapping is not.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);  // opens + validates everything
  SafetensorsReader(SafetensorsReader&&) noexcept = default;
  SafetensorsReader& operator=(SafetensorsReader&&) noexcept = default;
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in data-offset order
  const TensorInfo* find(const std::string& name) const;               // nullptr if absent
  const TensorInfo& at(const std::string& name) const;  // throws naming file and tensor
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t data_offset() const { return data_offset_; }  // 8 + header length
  uint64_t file_size() const { return file_size_; }

  // pread of n_bytes at byte_offset within the tensor's data; throws on a range outside the
  // tensor, a tensor not from this file, I/O errors and short reads.
  void read(const TensorInfo& tensor, uint64_t byte_offset, uint64_t n_bytes, void* dst) const;
  std::vector<uint8_t> read_tensor(const TensorInfo& tensor) const;

  // Tensor digests (issue 19): with digest_whole_reads(true), every read of a whole tensor also
  // notes the XXH64 of the bytes read; copies note theirs with note_digest. content_digest is
  // then the file's digest under the shard rule (formats/shard_digest.hpp) once every tensor
  // has one, with no second read of the file.
  void digest_whole_reads(bool on) const { digest_reads_->store(on); }
  bool known_digest(const TensorInfo& tensor, uint64_t* digest) const;
  void note_digest(const TensorInfo& tensor, uint64_t digest) const;
  uint64_t header_digest() const { return header_digest_; }  // XXH64 of [0, data_offset())
  bool content_digest(uint64_t* digest) const;

 private:
  size_t position_of(const TensorInfo& tensor) const;  // throws unless the tensor is this file's

  std::string path_;
  FileDescriptor fd_;
  uint64_t file_size_ = 0;
  uint64_t data_offset_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
  uint64_t header_digest_ = 0;
  std::unique_ptr<std::atomic<bool>> digest_reads_ = std::make_unique<std::atomic<bool>>(false);
  std::unique_ptr<TensorDigests> digests_;  // parallel to tensors_
};

}  // namespace qf::formats
