// SafetensorsWriter and layout_safetensors: header layout, streaming writes to a temp file,
// coverage check and atomic commit. Does not own: tensor contents or shard planning.
#include "formats/safetensors_writer.hpp"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/check.hpp"
#include "core/log.hpp"
#include "formats/safetensors_header.hpp"

namespace qf::formats {
namespace {

std::string encode_u64_le(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
  return bytes;
}

// Adds [begin, end) to a set of disjoint, non-touching ranges, merging neighbours.
void add_range(std::map<uint64_t, uint64_t>* ranges, uint64_t begin, uint64_t end) {
  if (begin == end) return;
  auto it = ranges->upper_bound(begin);
  if (it != ranges->begin()) {
    const auto previous = std::prev(it);
    if (previous->second >= begin) {
      begin = previous->first;
      end = std::max(end, previous->second);
      it = ranges->erase(previous);
    }
  }
  while (it != ranges->end() && it->first <= end) {
    end = std::max(end, it->second);
    it = ranges->erase(it);
  }
  ranges->emplace(begin, end);
}

}  // namespace

// ---- layout ------------------------------------------------------------------------------------

SafetensorsLayout layout_safetensors(const std::vector<TensorSpec>& tensors,
                                     const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps __metadata__ first and the tensors in data order, for readable headers.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& meta = header[kSafetensorsMetadataKey];
    meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
  }
  std::set<std::string> names;
  std::vector<uint64_t> begins;
  uint64_t offset = 0;
  for (const TensorSpec& spec : tensors) {
    QF_CHECK(!spec.name.empty(), "safetensors layout: empty tensor name");
    QF_CHECK(spec.name != kSafetensorsMetadataKey, "safetensors layout: tensor may not be named",
             kSafetensorsMetadataKey);
    QF_CHECK(names.insert(spec.name).second, "safetensors layout: duplicate tensor", spec.name);
    const uint64_t n_bytes = spec.n_bytes();
    QF_CHECK(offset <= std::numeric_limits<uint64_t>::max() - n_bytes,
             "safetensors layout: data size overflows 64 bits at tensor", spec.name);
    header[spec.name] = {{"dtype", dtype_name(spec.dtype)},
                         {"shape", spec.shape},
                         {"data_offsets", {offset, offset + n_bytes}}};
    begins.push_back(offset);
    offset += n_bytes;
  }
  std::string json_text;
  try {
    json_text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // e.g. a name that is not valid UTF-8
    QF_FAIL("safetensors layout: cannot serialize the header:", e.what());
  }
  json_text.append((8 - json_text.size() % 8) % 8, ' ');  // data starts 8-aligned
  QF_CHECK(json_text.size() <= kSafetensorsMaxHeaderBytes, "safetensors layout: header of",
           json_text.size(), "bytes exceeds the", kSafetensorsMaxHeaderBytes, "byte limit");

  SafetensorsLayout layout;
  layout.header_bytes = encode_u64_le(json_text.size()) + json_text;
  const uint64_t data_offset = layout.header_bytes.size();
  for (size_t i = 0; i < tensors.size(); ++i) {
    layout.file_offset.emplace(tensors[i].name, data_offset + begins[i]);
  }
  layout.file_size = data_offset + offset;
  return layout;
}

// ---- writer ------------------------------------------------------------------------------------

SafetensorsWriter::SafetensorsWriter(std::string final_path, std::vector<TensorSpec> tensors,
                                     std::map<std::string, std::string> metadata)
    : final_path_(std::move(final_path)),
      temp_path_(temp_path_for(final_path_)),
      mutex_(std::make_unique<std::mutex>()) {
  const SafetensorsLayout layout = layout_safetensors(tensors, metadata);
  data_offset_ = layout.header_bytes.size();
  file_size_ = layout.file_size;
  append_cursor_ = data_offset_;
  for (const TensorSpec& spec : tensors) {
    extents_.emplace(spec.name, Extent{layout.file_offset.at(spec.name), spec.n_bytes()});
  }
  fd_ = open_for_write(temp_path_);
  try {
    pwrite_full(fd_, layout.header_bytes.data(), layout.header_bytes.size(), 0);
  } catch (...) {
    fd_ = FileDescriptor();  // the destructor will not run: clean up here
    remove_file_noexcept(temp_path_);
    throw;
  }
}

SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&& other) noexcept
    : final_path_(std::move(other.final_path_)),
      temp_path_(std::move(other.temp_path_)),
      fd_(std::move(other.fd_)),
      extents_(std::move(other.extents_)),
      data_offset_(other.data_offset_),
      file_size_(other.file_size_),
      append_cursor_(other.append_cursor_),
      committed_(other.committed_),
      mutex_(std::move(other.mutex_)),
      written_(std::move(other.written_)) {
  other.temp_path_.clear();  // the moved-from writer owns no file
  other.committed_ = true;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (committed_ || temp_path_.empty()) return;
  try {
    fd_ = FileDescriptor();
    remove_file_noexcept(temp_path_);
    log_warn("safetensors writer: ", final_path_, " not committed; removed ", temp_path_);
  } catch (...) {
    // Destructors never throw (STYLE.md section 4); the log line is best effort.
  }
}

void SafetensorsWriter::write_range(uint64_t file_offset, const void* data, uint64_t n_bytes) {
  QF_CHECK(!committed_ && fd_.valid(), final_path_ + ":", "write after commit or failed commit");
  if (n_bytes == 0) return;
  pwrite_full(fd_, data, n_bytes, file_offset);
  const std::lock_guard<std::mutex> lock(*mutex_);
  add_range(&written_, file_offset, file_offset + n_bytes);
}

void SafetensorsWriter::append(const void* data, uint64_t n_bytes) {
  QF_CHECK(n_bytes <= file_size_ - append_cursor_, final_path_ + ":", "append of", n_bytes,
           "bytes goes past the end of the data:", file_size_ - append_cursor_, "bytes left");
  write_range(append_cursor_, data, n_bytes);
  append_cursor_ += n_bytes;
}

void SafetensorsWriter::write_at(const std::string& name, uint64_t byte_offset, const void* data,
                                 uint64_t n_bytes) {
  const auto it = extents_.find(name);
  QF_CHECK(it != extents_.end(), final_path_ + ":", "no tensor named '" + name + "' in this file");
  const Extent& extent = it->second;
  QF_CHECK(byte_offset <= extent.n_bytes && n_bytes <= extent.n_bytes - byte_offset,
           final_path_ + ":", "tensor '" + name + "': write of", n_bytes, "bytes at byte",
           byte_offset, "is outside its", extent.n_bytes, "bytes");
  write_range(extent.file_offset + byte_offset, data, n_bytes);
}

uint64_t SafetensorsWriter::tensor_offset(const std::string& name) const {
  const auto it = extents_.find(name);
  QF_CHECK(it != extents_.end(), final_path_ + ":", "no tensor named '" + name + "' in this file");
  return it->second.file_offset;
}

void SafetensorsWriter::commit() {
  QF_CHECK(!committed_ && fd_.valid(), final_path_ + ":", "commit after commit or failed commit");
  {
    const std::lock_guard<std::mutex> lock(*mutex_);
    uint64_t missing = data_offset_;  // first data byte not written, if any
    if (!written_.empty() && written_.begin()->first == data_offset_) {
      missing = written_.begin()->second;
    }
    if (missing < file_size_) {
      for (const auto& [name, extent] : extents_) {
        if (missing >= extent.file_offset && missing < extent.file_offset + extent.n_bytes) {
          QF_FAIL(final_path_ + ":", "commit with unwritten data: tensor '" + name + "' byte",
                  missing - extent.file_offset, "of", extent.n_bytes, "was never written");
        }
      }
      QF_FAIL(final_path_ + ":", "commit with unwritten data at file offset", missing);
    }
  }
  QF_CHECK(file_n_bytes(fd_) == file_size_, temp_path_ + ":", "has", file_n_bytes(fd_),
           "bytes, expected", file_size_);
  fsync_file(fd_);
  fd_.close();
  rename_file(temp_path_, final_path_);
  committed_ = true;
  fsync_parent_dir(final_path_);
}

}  // namespace qf::formats
