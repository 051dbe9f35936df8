// The element types quantforge reads and writes, with one traits table (llama.cpp type_traits
// style). Parsing and writing safetensors headers both go through this table.
// Owns: names, sizes. Does not own: value codecs (numerics/).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qf {

enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kI16,
  kU16,
  kI32,
  kU32,
  kI64,
  kU64,
  kF16,
  kBF16,
  kF32,
  kF64,
  kF8E4M3,
  kF8E5M2,
  kF8E8M0,
  kF4,  // logical E2M1 elements, two per byte (safetensors "F4": shape counts elements)
};

struct DTypeTraits {
  DType dtype;
  const char* safetensors_name;  // exact string in safetensors headers
  int n_bits;                    // bits per element
  bool is_float;
};

const DTypeTraits& dtype_traits(DType dtype);
const char* dtype_name(DType dtype);
// Returns false for names outside the table (the caller names the file and tensor).
bool parse_dtype(const std::string& name, DType* out);
// Every dtype the table knows, in declaration order (for tests and help text).
const std::vector<DType>& all_dtypes();

// Bytes for n_elems elements; throws if the bit count is not a whole number of bytes.
uint64_t dtype_n_bytes(DType dtype, uint64_t n_elems);

}  // namespace qf
