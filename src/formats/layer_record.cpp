// LayerRecord validation and exact comparison.
#include "formats/layer_record.hpp"

#include <cstring>
#include <set>

#include "core/check.hpp"
#include "formats/tensor_spec.hpp"

namespace qf::formats {

const EnumTable<DerivationRule>& derivation_rules() {
  static const EnumTable<DerivationRule> table(
      "derivation rule", {{"identity", DerivationRule::kIdentity, "the source tensor's bytes"},
                          {"fp4_negative_zero_cleared", DerivationRule::kFp4NegativeZeroCleared,
                           "the source's packed E2M1 codes with each -0 (nibble 8) made +0"},
                          {"e8m0_block_scale_as_e4m3", DerivationRule::kE8m0BlockScaleAsE4m3,
                           "each E8M0 block scale as two E4M3 block scales under a shift"}});
  return table;
}

bool StoredTensor::operator==(const StoredTensor& other) const {
  return name == other.name && dtype == other.dtype && shape == other.shape &&
         bytes == other.bytes && derived == other.derived;
}

bool LayerRecord::operator==(const LayerRecord& other) const {
  if (layer != other.layer || tensors != other.tensors || i64 != other.i64 ||
      attrs != other.attrs || f32.size() != other.f32.size()) {
    return false;
  }
  for (auto a = f32.begin(), b = other.f32.begin(); a != f32.end(); ++a, ++b) {
    if (a->first != b->first || a->second.size() != b->second.size()) return false;
    if (!a->second.empty() &&
        std::memcmp(a->second.data(), b->second.data(), a->second.size() * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

uint64_t LayerRecord::n_tensor_bytes() const {
  uint64_t total = 0;
  for (const StoredTensor& tensor : tensors) total += tensor.bytes.size();
  return total;
}

const StoredTensor* LayerRecord::find_tensor(const std::string& name) const {
  for (const StoredTensor& tensor : tensors) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

void check_record_name(const std::string& name, const std::string& what, const std::string& label) {
  QF_CHECK(!name.empty(), label + ":", "empty", what, "name");
  QF_CHECK(name != ".", label + ":", what, "name \".\" is reserved by HDF5");
  QF_CHECK(name.find('/') == std::string::npos && name.find('\0') == std::string::npos, label + ":",
           what, "name \"" + name + "\" contains '/' or a NUL byte");
}

void validate_layer_record(const LayerRecord& record, const std::string& label) {
  QF_CHECK(record.layer >= 0, label + ":", "layer number", record.layer, "is negative");
  std::set<std::string> names;
  for (const StoredTensor& tensor : record.tensors) {
    check_record_name(tensor.name, "tensor", label);
    QF_CHECK(names.insert(tensor.name).second, label + ":", "duplicate tensor", tensor.name);
    const std::string what = label + ": tensor " + tensor.name;
    const uint64_t n_bytes = tensor_n_bytes(tensor.dtype, shape_n_elems(tensor.shape, what), what);
    const bool derived_without_bytes = tensor.derived && tensor.bytes.empty();
    QF_CHECK(tensor.bytes.size() == n_bytes || derived_without_bytes, what,
             dtype_name(tensor.dtype), shape_str(tensor.shape), "needs", n_bytes, "bytes but holds",
             tensor.bytes.size());
    if (tensor.derived) {
      const std::string& source = tensor.derived->source;
      QF_CHECK(!source.empty() && source.find('\0') == std::string::npos, what,
               "is derived from a source tensor with an empty name or a NUL byte in it");
    }
  }
  for (const auto& [key, values] : record.f32) check_record_name(key, "f32 key", label);
  for (const auto& [key, values] : record.i64) check_record_name(key, "i64 key", label);
  for (const auto& [key, value] : record.attrs) {
    check_record_name(key, "attribute", label);
    QF_CHECK(value.find('\0') == std::string::npos, label + ":", "attribute", key,
             "holds a NUL byte");
  }
}

}  // namespace qf::formats
