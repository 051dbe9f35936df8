// SafetensorsWriter: streams one .safetensors file to a temp name, then commits it atomically.
// Also layout_safetensors(), the header/offset plan shared by writers on several ranks.
// Owns: header layout and the write/commit protocol. Does not own: which tensors go where.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "formats/posix_file.hpp"
#include "formats/tensor_spec.hpp"

namespace qf::formats {

// The on-disk plan of one file, without writing it (so several ranks can pwrite into one file
// at agreed offsets). Tensors are laid out contiguously from 0 in the given order; the JSON is
// padded with spaces so that the data buffer starts at a multiple of 8.
struct SafetensorsLayout {
  std::string header_bytes;                     // 8-byte LE length + padded JSON
  std::map<std::string, uint64_t> file_offset;  // tensor name -> file offset of its first byte
  uint64_t file_size = 0;
};

// Throws qf::Error on empty or duplicate names, the name "__metadata__", or byte-count overflow.
SafetensorsLayout layout_safetensors(const std::vector<TensorSpec>& tensors,
                                     const std::map<std::string, std::string>& metadata = {
                                         {"format", "pt"}});

// Streaming writer: never holds a shard in memory. Nothing appears under final_path unless
// commit() succeeds; an uncommitted writer removes its temp file when destroyed. append() and
// write_at() may be mixed; write_at() may be called from several threads at once.
class SafetensorsWriter {
 public:
  // Lays out the header, creates `<final_path>.tmp.<pid>` and writes the header.
  SafetensorsWriter(std::string final_path, std::vector<TensorSpec> tensors,
                    std::map<std::string, std::string> metadata = {{"format", "pt"}});
  ~SafetensorsWriter();  // not committed -> temp file removed (logs, never throws)
  SafetensorsWriter(SafetensorsWriter&&) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&&) = delete;
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Next bytes of the tensors, in order; may split tensors arbitrarily; throws if past the end.
  void append(const void* data, uint64_t n_bytes);
  // Positional write: bytes at byte_offset within tensor `name` (throws outside the tensor).
  void write_at(const std::string& name, uint64_t byte_offset, const void* data, uint64_t n_bytes);

  uint64_t data_offset() const { return data_offset_; }   // file offset of the data buffer
  uint64_t tensor_offset(const std::string& name) const;  // file offset of the tensor's data
  const std::string& final_path() const { return final_path_; }
  const std::string& temp_path() const { return temp_path_; }

  // Checks every data byte was written at least once, fsyncs, renames the temp file to
  // final_path and fsyncs the directory. Throws (leaving the temp file to the destructor).
  void commit();

 private:
  void write_range(uint64_t file_offset, const void* data, uint64_t n_bytes);

  std::string final_path_;
  std::string temp_path_;
  struct Extent {
    uint64_t file_offset = 0;
    uint64_t n_bytes = 0;
  };
  FileDescriptor fd_;
  std::unordered_map<std::string, Extent> extents_;  // tensor name -> where its bytes go
  uint64_t data_offset_ = 0;
  uint64_t file_size_ = 0;
  uint64_t append_cursor_ = 0;  // file offset of the next append()
  bool committed_ = false;
  std::unique_ptr<std::mutex> mutex_;     // guards written_
  std::map<uint64_t, uint64_t> written_;  // merged [begin, end) data ranges written so far
};

}  // namespace qf::formats
