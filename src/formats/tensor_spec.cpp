// Element and byte counts of a tensor shape, with overflow checks (headers are untrusted input).
// Owns: TensorSpec/TensorInfo counting. Does not own: dtype traits (core/dtype.cpp).
#include "formats/tensor_spec.hpp"

#include <limits>
#include <sstream>

#include "core/check.hpp"

namespace qf::formats {

uint64_t shape_n_elems(const std::vector<int64_t>& shape, const std::string& what) {
  bool has_zero = false;
  for (const int64_t dim : shape) {
    QF_CHECK(dim >= 0, what + ":", "negative dimension", dim, "in shape", shape_str(shape));
    has_zero = has_zero || dim == 0;
  }
  if (has_zero) return 0;  // before multiplying: [2^40, 2^40, 0] is a valid empty tensor
  uint64_t n_elems = 1;
  for (const int64_t dim : shape) {
    const auto d = static_cast<uint64_t>(dim);
    QF_CHECK(n_elems <= std::numeric_limits<uint64_t>::max() / d, what + ":",
             "element count overflows 64 bits for shape", shape_str(shape));
    n_elems *= d;
  }
  return n_elems;
}

uint64_t tensor_n_bytes(DType dtype, uint64_t n_elems, const std::string& what) {
  const auto n_bits = static_cast<uint64_t>(dtype_traits(dtype).n_bits);
  QF_CHECK(n_elems <= std::numeric_limits<uint64_t>::max() / n_bits, what + ":",
           "byte count overflows 64 bits for", n_elems, "elements of", dtype_name(dtype));
  QF_CHECK((n_elems * n_bits) % 8 == 0, what + ":", n_elems, "elements of", dtype_name(dtype),
           "are not a whole number of bytes");
  return n_elems * n_bits / 8;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

uint64_t TensorSpec::n_elems() const { return shape_n_elems(shape, "tensor " + name); }

uint64_t TensorSpec::n_bytes() const { return tensor_n_bytes(dtype, n_elems(), "tensor " + name); }

}  // namespace qf::formats
