// LayerRecord: what the rank store keeps for one layer and one stage (tensors of any dtype,
// float and int64 arrays, string attributes). Owns: validation, equality. Does not own: files.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.hpp"
#include "core/enum_table.hpp"

namespace qf::formats {

// How a stored tensor's bytes follow from one source tensor's bytes (issue 19: the work store
// does not write again what the source already holds; formats/source_derived).
enum class DerivationRule {
  kIdentity,                // the same bytes
  kFp4NegativeZeroCleared,  // packed E2M1 pairs with each -0 code (nibble 8) made +0 (nibble 0)
  // Each E8M0 byte (2^k, one MXFP4 32-block's scale) becomes two E4M3 bytes (its 16-halves): the
  // lossless cast's block scale 6 * 2^k / (6 * 2^shift), clamped to [2^-9, 448]; shift is the
  // exponent of the tensor's weight_scale_2.
  kE8m0BlockScaleAsE4m3
};
// Names as layer files store them: "identity", "fp4_negative_zero_cleared",
// "e8m0_block_scale_as_e4m3".
const EnumTable<DerivationRule>& derivation_rules();
// Whether `rule` takes a shift (SourceDerivation::shift): the block-scale rule only.
inline bool derivation_takes_shift(DerivationRule rule) {
  return rule == DerivationRule::kE8m0BlockScaleAsE4m3;
}

struct SourceDerivation {
  std::string source;  // the source tensor's name
  DerivationRule rule = DerivationRule::kIdentity;
  uint64_t xxh64 = 0;  // of the derived bytes: what a rebuild from the source must give
  int32_t shift = 0;   // kE8m0BlockScaleAsE4m3's; 0 for the other rules

  bool operator==(const SourceDerivation& other) const {
    return source == other.source && rule == other.rule && xxh64 == other.xxh64 &&
           shift == other.shift;
  }
};

// One tensor, byte-exact: `bytes` are the safetensors data bytes (little-endian elements; F4:
// two E2M1 codes per byte), `shape` counts logical elements ({} for a 0-d tensor).
// A tensor with `derived` is written to a layer file without its bytes; read back, its bytes are
// empty until materialize_source_derived rebuilds them from the source.
struct StoredTensor {
  StoredTensor() = default;
  StoredTensor(std::string name_, DType dtype_, std::vector<int64_t> shape_,
               std::vector<uint8_t> bytes_)
      : name(std::move(name_)), dtype(dtype_), shape(std::move(shape_)), bytes(std::move(bytes_)) {}

  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
  std::optional<SourceDerivation> derived;

  bool operator==(const StoredTensor& other) const;
  bool operator!=(const StoredTensor& other) const { return !(*this == other); }
};

// One layer's results for one stage. Typical use (keys are the caller's choice):
//   stage "calib": f32["<linear>.input_amax"] = {amax}, i64["expert_tokens"] = {n per expert}
//   stage "quant": tensors "<linear>.weight" (U8 packed E2M1), ".weight_scale" (F8_E4M3),
//                  ".weight_scale_2" (F32, 0-d), ".input_scale" (F32, 0-d)
// Tensors keep their order; maps are ordered by key.
struct LayerRecord {
  int layer = 0;  // >= 0; values past the last hidden layer may label non-layer groups
  std::vector<StoredTensor> tensors;
  std::map<std::string, std::vector<float>> f32;
  std::map<std::string, std::vector<int64_t>> i64;
  std::map<std::string, std::string> attrs;  // UTF-8, no NUL bytes

  // Bitwise float comparison (NaN payloads included), so a round trip can be checked exactly.
  bool operator==(const LayerRecord& other) const;
  bool operator!=(const LayerRecord& other) const { return !(*this == other); }
  uint64_t n_tensor_bytes() const;  // sum of tensors[i].bytes.size() (held in memory)
  const StoredTensor* find_tensor(const std::string& name) const;  // nullptr if absent
};

// Throws qf::Error (prefixed with `label`) unless: layer >= 0; every name and key is a valid
// HDF5 link name (non-empty, not "." , no '/' and no NUL); tensor names are unique; every
// shape dim is >= 0 and bytes.size() equals the dtype's byte count for the shape (or is 0 for a
// derived tensor, whose source name must be non-empty); attribute values hold no NUL byte.
void validate_layer_record(const LayerRecord& record, const std::string& label);

// The name rule above: throws naming `what` (e.g. "tensor", "f32 key") and the name.
void check_record_name(const std::string& name, const std::string& what, const std::string& label);

}  // namespace qf::formats
