// The safetensors JSON header: TensorInfo and the validating parser (FORMATS.md section 5).
// Owns: every rule about header contents. Does not own: file I/O (SafetensorsReader).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/tensor_spec.hpp"

namespace qf::formats {

// Header length limit of the reference implementation (ST tensor.rs MAX_HEADER_SIZE).
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100000000;
constexpr const char* kSafetensorsMetadataKey = "__metadata__";

struct TensorInfo {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the start of the data buffer

  uint64_t n_elems() const;
  uint64_t n_bytes() const;  // end - begin (validated equal to the dtype/shape byte count)
  TensorSpec spec() const;
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by data offset (begin, then end, then name)
  std::map<std::string, std::string> metadata;
};

// Parses and validates the JSON header text (the N bytes after the length prefix) against a
// data buffer of `buffer_n_bytes` bytes. Every violation throws qf::Error whose message starts
// with `file_label` and names the tensor (where there is one) and the reason.
SafetensorsHeader parse_safetensors_header(const std::string& json_text, uint64_t buffer_n_bytes,
                                           const std::string& file_label);

}  // namespace qf::formats
