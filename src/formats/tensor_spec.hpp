// TensorSpec: the name, dtype and logical shape of one tensor, independent of any file.
// Owns: element and byte counts (overflow-checked). Does not own: file offsets (reader/writer).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.hpp"

namespace qf::formats {

struct TensorSpec {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;  // logical elements per dim (F4: E2M1 elements, 2 per byte)

  // Product of the dims; 1 for a 0-d tensor, 0 if any dim is 0. Throws qf::Error naming the
  // tensor on a negative dim or a product that overflows uint64.
  uint64_t n_elems() const;
  // dtype_n_bytes(dtype, n_elems()); throws on overflow or a fractional byte count.
  uint64_t n_bytes() const;
};

// Checked product of `shape`; `what` names the tensor (and file) in the error.
uint64_t shape_n_elems(const std::vector<int64_t>& shape, const std::string& what);
// Checked byte count of n_elems elements of dtype; `what` names the tensor in the error.
uint64_t tensor_n_bytes(DType dtype, uint64_t n_elems, const std::string& what);
// "[7168, 2048]" for logs and error messages.
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace qf::formats
