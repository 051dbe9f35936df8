// SafetensorsReader: the length prefix, file-size rules and pread access to tensor bytes.
// Owns: file-level validation. Does not own: JSON header rules (safetensors_header.cpp).
#include "formats/safetensors_reader.hpp"

#include "core/check.hpp"
#include "formats/checksum.hpp"
#include "formats/shard_digest.hpp"

namespace qf::formats {
namespace {
constexpr uint64_t kLengthPrefixBytes = 8;

uint64_t decode_u64_le(const unsigned char* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}
}  // namespace

SafetensorsReader::SafetensorsReader(const std::string& path)
    : path_(path), fd_(open_for_read(path)) {
  file_size_ = file_n_bytes(fd_);
  QF_CHECK(file_size_ >= kLengthPrefixBytes, path_ + ":", "file has", file_size_,
           "bytes, too short for the 8-byte header length");
  unsigned char prefix[kLengthPrefixBytes];
  pread_full(fd_, prefix, kLengthPrefixBytes, 0);
  const uint64_t header_n_bytes = decode_u64_le(prefix);
  QF_CHECK(header_n_bytes <= kSafetensorsMaxHeaderBytes, path_ + ":", "bad header length",
           header_n_bytes, "(limit", kSafetensorsMaxHeaderBytes, "bytes)");
  QF_CHECK(header_n_bytes <= file_size_ - kLengthPrefixBytes, path_ + ":", "bad header length",
           header_n_bytes, "exceeds the", file_size_ - kLengthPrefixBytes,
           "bytes after the length prefix (truncated file?)");
  data_offset_ = kLengthPrefixBytes + header_n_bytes;

  std::string header_text(header_n_bytes, '\0');
  pread_full(fd_, header_text.data(), header_n_bytes, kLengthPrefixBytes);
  SafetensorsHeader header =
      parse_safetensors_header(header_text, file_size_ - data_offset_, path_);
  tensors_ = std::move(header.tensors);
  metadata_ = std::move(header.metadata);
  index_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  Checksum64 header_sum;
  header_sum.update(prefix, kLengthPrefixBytes);
  header_sum.update(header_text.data(), header_text.size());
  header_digest_ = header_sum.digest();
  digests_ = std::make_unique<TensorDigests>(tensors_.size());
  // Nobody reads an empty tensor, and its digest is known without reading.
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (tensors_[i].n_bytes() == 0) digests_->note(i, checksum64("", 0));
  }
}

const TensorInfo* SafetensorsReader::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SafetensorsReader::at(const std::string& name) const {
  const TensorInfo* info = find(name);
  QF_CHECK(info != nullptr, path_ + ":", "no tensor named '" + name + "'");
  return *info;
}

size_t SafetensorsReader::position_of(const TensorInfo& tensor) const {
  const auto it = index_.find(tensor.name);
  QF_CHECK(it != index_.end() && tensors_[it->second].begin == tensor.begin &&
               tensors_[it->second].end == tensor.end,
           path_ + ":", "tensor '" + tensor.name + "' is not from this file");
  return it->second;
}

void SafetensorsReader::read(const TensorInfo& tensor, uint64_t byte_offset, uint64_t n_bytes,
                             void* dst) const {
  const size_t position = position_of(tensor);
  const TensorInfo* own = &tensors_[position];
  const uint64_t tensor_n_bytes = own->n_bytes();
  QF_CHECK(byte_offset <= tensor_n_bytes && n_bytes <= tensor_n_bytes - byte_offset, path_ + ":",
           "tensor '" + tensor.name + "': read of", n_bytes, "bytes at byte", byte_offset,
           "is outside its", tensor_n_bytes, "bytes");
  if (n_bytes > 0) pread_full(fd_, dst, n_bytes, data_offset_ + own->begin + byte_offset);
  if (n_bytes > 0 && n_bytes == tensor_n_bytes && digest_reads_->load()) {
    digests_->note(position, checksum64(dst, n_bytes));
  }
}

bool SafetensorsReader::known_digest(const TensorInfo& tensor, uint64_t* digest) const {
  return digests_->find(position_of(tensor), digest);
}

void SafetensorsReader::note_digest(const TensorInfo& tensor, uint64_t digest) const {
  digests_->note(position_of(tensor), digest);
}

bool SafetensorsReader::content_digest(uint64_t* digest) const {
  std::vector<uint64_t> tensors;
  if (!digests_->all(&tensors)) return false;
  *digest = combine_shard_digest(header_digest_, tensors);  // tensors_ is in data-offset order
  return true;
}

std::vector<uint8_t> SafetensorsReader::read_tensor(const TensorInfo& tensor) const {
  const TensorInfo& own = tensors_[position_of(tensor)];  // before allocating: may be foreign
  std::vector<uint8_t> bytes(own.n_bytes());
  read(tensor, 0, bytes.size(), bytes.data());
  return bytes;
}

}  // namespace qf::formats
