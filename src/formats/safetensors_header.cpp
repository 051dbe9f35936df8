// Validation of the safetensors JSON header (FORMATS.md section 5; ST safetensors/src/tensor.rs).
// Owns: per-entry rules and the contiguous-tiling rule. Does not own: the length prefix or I/O.
#include "formats/safetensors_header.hpp"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/check.hpp"
#include "formats/atomic_file.hpp"

namespace qf::formats {
namespace {

using nlohmann::json;

// "[begin, end)" of a byte range, for messages.
std::string range_str(uint64_t begin, uint64_t end) { return str_cat('[', begin, ", ", end, ')'); }

std::string tensor_label(const std::string& file_label, const std::string& name) {
  return file_label + ": tensor '" + name + "'";
}

// A JSON value that is a non-negative integer fitting int64 (shape dims and offsets).
bool is_count(const json& value) {
  return value.is_number_unsigned() &&
         value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

std::map<std::string, std::string> parse_metadata(const json& value,
                                                  const std::string& file_label) {
  QF_CHECK(value.is_object(), file_label + ":", "__metadata__ must be an object of strings, not",
           value.type_name());
  std::map<std::string, std::string> metadata;
  for (const auto& item : value.items()) {
    QF_CHECK(item.value().is_string(), file_label + ":",
             "__metadata__ value of key '" + item.key() + "'", "must be a string, not",
             item.value().type_name());
    metadata.emplace(item.key(), item.value().get<std::string>());
  }
  return metadata;
}

TensorInfo parse_entry(const std::string& name, const json& entry, uint64_t buffer_n_bytes,
                       const std::string& file_label) {
  const std::string label = tensor_label(file_label, name);
  QF_CHECK(entry.is_object(), label + ":", "entry must be an object, not", entry.type_name());
  for (const auto& item : entry.items()) {
    const std::string& key = item.key();
    QF_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", label + ":",
             "unknown field '" + key + "'");
  }
  TensorInfo info;
  info.name = name;

  const auto dtype_it = entry.find("dtype");
  QF_CHECK(dtype_it != entry.end(), label + ":", "missing dtype");
  QF_CHECK(dtype_it->is_string(), label + ":", "dtype must be a string, not",
           dtype_it->type_name());
  const auto& dtype_text = dtype_it->get_ref<const std::string&>();
  QF_CHECK(parse_dtype(dtype_text, &info.dtype), label + ":", "unknown dtype '" + dtype_text + "'");

  const auto shape_it = entry.find("shape");
  QF_CHECK(shape_it != entry.end(), label + ":", "missing shape");
  QF_CHECK(shape_it->is_array(), label + ":", "shape must be an array, not", shape_it->type_name());
  for (const json& dim : *shape_it) {
    QF_CHECK(is_count(dim), label + ":", "shape entries must be non-negative integers, got",
             dim.dump());
    info.shape.push_back(dim.get<int64_t>());
  }

  const auto offsets_it = entry.find("data_offsets");
  QF_CHECK(offsets_it != entry.end(), label + ":", "missing data_offsets");
  QF_CHECK(offsets_it->is_array() && offsets_it->size() == 2 && is_count((*offsets_it)[0]) &&
               is_count((*offsets_it)[1]),
           label + ":", "data_offsets must be [begin, end] of non-negative integers, got",
           offsets_it->dump());
  info.begin = (*offsets_it)[0].get<uint64_t>();
  info.end = (*offsets_it)[1].get<uint64_t>();
  QF_CHECK(info.begin <= info.end, label + ":", "data_offsets begin", info.begin, "> end",
           info.end);
  QF_CHECK(info.end <= buffer_n_bytes, label + ":", "data_offsets", range_str(info.begin, info.end),
           "out of range: the data buffer has", buffer_n_bytes, "bytes");

  const uint64_t n_bytes = tensor_n_bytes(info.dtype, shape_n_elems(info.shape, label), label);
  QF_CHECK(info.end - info.begin == n_bytes, label + ":", "size mismatch:", dtype_text, "shape",
           shape_str(info.shape), "needs", n_bytes, "bytes but data_offsets span",
           info.end - info.begin);
  return info;
}

// Sorted by offset, the tensors must tile [0, buffer_n_bytes) with no gap and no overlap.
void check_tiling(const std::vector<TensorInfo>& tensors, uint64_t buffer_n_bytes,
                  const std::string& file_label) {
  uint64_t expected = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& tensor : tensors) {
    const std::string label = tensor_label(file_label, tensor.name);
    QF_CHECK(tensor.begin <= expected, label + ":", "gap in the data buffer: bytes",
             range_str(expected, tensor.begin), "belong to no tensor");
    QF_CHECK(tensor.begin == expected, label + ":", "data_offsets",
             range_str(tensor.begin, tensor.end),
             "overlap tensor '" + (previous ? previous->name : std::string()) + "'",
             "which ends at", expected);
    expected = tensor.end;
    previous = &tensor;
  }
  QF_CHECK(expected == buffer_n_bytes, file_label + ":", "tensors end at data byte", expected,
           "but the file has", buffer_n_bytes - expected,
           "more bytes (trailing bytes or a gap at the end of the data buffer)");
}

}  // namespace

uint64_t TensorInfo::n_elems() const { return shape_n_elems(shape, "tensor " + name); }

uint64_t TensorInfo::n_bytes() const { return end - begin; }

TensorSpec TensorInfo::spec() const { return TensorSpec{name, dtype, shape}; }

SafetensorsHeader parse_safetensors_header(const std::string& json_text, uint64_t buffer_n_bytes,
                                           const std::string& file_label) {
  const size_t first = json_text.find_first_not_of(" \t\r\n");
  QF_CHECK(first != std::string::npos && json_text[first] == '{', file_label + ":",
           "header is not a JSON object (it must start with '{')");
  const json root = parse_json_strict(json_text, file_label + " header");
  QF_CHECK(root.is_object(), file_label + ":", "header is not a JSON object");

  SafetensorsHeader header;
  header.tensors.reserve(root.size());
  for (const auto& item : root.items()) {
    if (item.key() == kSafetensorsMetadataKey) {
      header.metadata = parse_metadata(item.value(), file_label);
    } else {
      header.tensors.push_back(parse_entry(item.key(), item.value(), buffer_n_bytes, file_label));
    }
  }
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              if (a.begin != b.begin) return a.begin < b.begin;
              if (a.end != b.end) return a.end < b.end;
              return a.name < b.name;
            });
  check_tiling(header.tensors, buffer_n_bytes, file_label);
  return header;
}

}  // namespace qf::formats
