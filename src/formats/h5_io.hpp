// Checked HDF5 reads and writes of the few shapes the rank store uses: string and int64
// attributes, 1-D numeric datasets, and link/attribute listings.
// Owns: type checks on read, large-transfer splitting. Does not own: any file layout.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "formats/h5_handles.hpp"

namespace qf::formats {

// ---- attributes (owner: a file, group or dataset id plus its label) ---------------------------

// Scalar fixed-length UTF-8 string, NUL-padded; the empty string is stored as one NUL byte.
// Throws if `value` contains a NUL byte (it could not round-trip).
void h5_write_attr_string(hid_t owner, const std::string& owner_label, const std::string& name,
                          const std::string& value);
std::string h5_read_attr_string(hid_t owner, const std::string& owner_label,
                                const std::string& name);
// int64 LE values, 1-D; an empty list is stored with a null dataspace (no elements).
void h5_write_attr_i64s(hid_t owner, const std::string& owner_label, const std::string& name,
                        const std::vector<int64_t>& values);
std::vector<int64_t> h5_read_attr_i64s(hid_t owner, const std::string& owner_label,
                                       const std::string& name);
// A one-element h5_write_attr_i64s; the read throws unless exactly one value is stored.
void h5_write_attr_i64(hid_t owner, const std::string& owner_label, const std::string& name,
                       int64_t value);
int64_t h5_read_attr_i64(hid_t owner, const std::string& owner_label, const std::string& name);
// Attribute names in name order.
std::vector<std::string> h5_attr_names(hid_t owner, const std::string& owner_label);

// ---- 1-D datasets ------------------------------------------------------------------------------

// Creates dataset `name` of n_elems elements of `file_type` under `parent` and writes `data`
// (n_elems elements of `mem_type`, elem_n_bytes each). Transfers are split at 256 MiB.
// Returns the dataset, still open, for attributes.
H5Dataset h5_write_dataset_1d(hid_t parent, const std::string& parent_label,
                              const std::string& name, hid_t file_type, hid_t mem_type,
                              size_t elem_n_bytes, const void* data, uint64_t n_elems);

// Opens dataset `name` and checks that it is 1-D (or empty) with a stored type equal to
// `file_type`; returns it with its element count.
H5Dataset h5_open_dataset_1d(hid_t parent, const std::string& parent_label, const std::string& name,
                             hid_t file_type, uint64_t* n_elems);
// Reads all n_elems elements (as checked by h5_open_dataset_1d) into data, as `mem_type`.
void h5_read_dataset_1d(const H5Dataset& dataset, hid_t mem_type, size_t elem_n_bytes, void* data,
                        uint64_t n_elems);
// Both of the above into a vector of T (T matching mem_type).
template <typename T>
std::vector<T> h5_read_vector_1d(hid_t parent, const std::string& parent_label,
                                 const std::string& name, hid_t file_type, hid_t mem_type) {
  uint64_t n_elems = 0;
  const H5Dataset dataset = h5_open_dataset_1d(parent, parent_label, name, file_type, &n_elems);
  std::vector<T> values(n_elems);
  h5_read_dataset_1d(dataset, mem_type, sizeof(T), values.data(), n_elems);
  return values;
}

// ---- listings ----------------------------------------------------------------------------------

// Names of the links in a group, in creation order (the store's groups track it).
std::vector<std::string> h5_link_names(hid_t group, const std::string& group_label);

}  // namespace qf::formats
