// The dtype traits table; the only place that knows safetensors' dtype strings.
#include "core/dtype.hpp"

#include "core/check.hpp"

namespace qf {
namespace {
// Same order as enum class DType.
const DTypeTraits kTraits[] = {
    {DType::kBool, "BOOL", 8, false},     {DType::kU8, "U8", 8, false},
    {DType::kI8, "I8", 8, false},         {DType::kI16, "I16", 16, false},
    {DType::kU16, "U16", 16, false},      {DType::kI32, "I32", 32, false},
    {DType::kU32, "U32", 32, false},      {DType::kI64, "I64", 64, false},
    {DType::kU64, "U64", 64, false},      {DType::kF16, "F16", 16, true},
    {DType::kBF16, "BF16", 16, true},     {DType::kF32, "F32", 32, true},
    {DType::kF64, "F64", 64, true},       {DType::kF8E4M3, "F8_E4M3", 8, true},
    {DType::kF8E5M2, "F8_E5M2", 8, true}, {DType::kF8E8M0, "F8_E8M0", 8, true},
    {DType::kF4, "F4", 4, true},
};
constexpr size_t kNumTraits = sizeof(kTraits) / sizeof(kTraits[0]);
}  // namespace

const DTypeTraits& dtype_traits(DType dtype) {
  const auto index = static_cast<size_t>(dtype);
  QF_CHECK(index < kNumTraits && kTraits[index].dtype == dtype, "bad dtype enum", index);
  return kTraits[index];
}

const char* dtype_name(DType dtype) { return dtype_traits(dtype).safetensors_name; }

bool parse_dtype(const std::string& name, DType* out) {
  for (const auto& traits : kTraits) {
    if (name == traits.safetensors_name) {
      *out = traits.dtype;
      return true;
    }
  }
  return false;
}

const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> dtypes = [] {
    std::vector<DType> list;
    for (const auto& traits : kTraits) list.push_back(traits.dtype);
    return list;
  }();
  return dtypes;
}

uint64_t dtype_n_bytes(DType dtype, uint64_t n_elems) {
  const uint64_t n_bits = n_elems * static_cast<uint64_t>(dtype_traits(dtype).n_bits);
  QF_CHECK(n_bits % 8 == 0, dtype_name(dtype), "tensor of", n_elems,
           "elements is not a whole number of bytes");
  return n_bits / 8;
}

}  // namespace qf
