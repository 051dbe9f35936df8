// Checked HDF5 attribute and 1-D dataset I/O. Every call names its object (file:/group/name or
// file:/group@attribute) and appends the HDF5 error stack to the message.
#include "formats/h5_io.hpp"

#include <algorithm>
#include <cstring>

#include "core/check.hpp"

namespace qf::formats {
namespace {

// One H5Dwrite/H5Dread moves at most this much; keeps each transfer far below 2 GiB.
constexpr uint64_t kMaxTransferBytes = uint64_t{256} << 20;

std::string attr_label(const std::string& owner_label, const std::string& name) {
  return owner_label + "@" + name;
}

herr_t collect_attr_name(hid_t /*owner*/, const char* name, const H5A_info_t* /*info*/,
                         void* client_data) {
  static_cast<std::vector<std::string>*>(client_data)->push_back(name);
  return 0;
}

// Calls fn(file_space, mem_space, data_offset_bytes) once per slice of at most
// kMaxTransferBytes; one call with H5S_ALL when the whole dataset fits.
template <typename Fn>
void for_each_slice(const H5Dataset& dataset, size_t elem_n_bytes, uint64_t n_elems, Fn fn) {
  const uint64_t slice_elems = std::max<uint64_t>(1, kMaxTransferBytes / elem_n_bytes);
  if (n_elems <= slice_elems) {
    fn(H5S_ALL, H5S_ALL, 0);
    return;
  }
  const H5Space file_space = H5Space::of_dataset(dataset.get(), dataset.label());
  for (uint64_t start = 0; start < n_elems; start += slice_elems) {
    const hsize_t offset = start;
    const hsize_t count = std::min(slice_elems, n_elems - start);
    QF_H5_CHECK(
        H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &offset, nullptr, &count, nullptr),
        dataset.label(), "cannot select elements", offset, "+", count, h5_error_text());
    const H5Space mem_space = H5Space::simple_1d(count, dataset.label());
    fn(file_space.get(), mem_space.get(), start * elem_n_bytes);
  }
}

}  // namespace

// ---- attributes --------------------------------------------------------------------------------

void h5_write_attr_string(hid_t owner, const std::string& owner_label, const std::string& name,
                          const std::string& value) {
  const std::string label = attr_label(owner_label, name);
  QF_CHECK(value.find('\0') == std::string::npos, label,
           "string attributes must not contain NUL bytes");
  std::string padded = value;
  if (padded.empty()) padded.push_back('\0');
  const H5Type type = H5Type::string_utf8(padded.size(), label);
  const H5Space space = H5Space::scalar(label);
  H5Attribute attr = H5Attribute::create(owner, owner_label, name, type.get(), space.get());
  QF_H5_CHECK(H5Awrite(attr.get(), type.get(), padded.data()), label, "write failed",
              h5_error_text());
  attr.close();
}

std::string h5_read_attr_string(hid_t owner, const std::string& owner_label,
                                const std::string& name) {
  const std::string label = attr_label(owner_label, name);
  const H5Attribute attr = H5Attribute::open(owner, owner_label, name);
  const H5Type type = H5Type::of_attribute(attr.get(), label);
  QF_CHECK(H5Tget_class(type.get()) == H5T_STRING && H5Tis_variable_str(type.get()) == 0, label,
           "is not a fixed-length string attribute");
  const H5Space space = H5Space::of_attribute(attr.get(), label);
  QF_CHECK(H5Sget_simple_extent_type(space.get()) == H5S_SCALAR, label, "is not a scalar");
  const size_t n_bytes = H5Tget_size(type.get());
  QF_CHECK(n_bytes >= 1, label, "has a zero-size string type");
  std::string value(n_bytes, '\0');
  QF_H5_CHECK(H5Aread(attr.get(), type.get(), value.data()), label, "read failed", h5_error_text());
  // NUL padding; values never contain NUL (checked on write).
  value.resize(value.find('\0') == std::string::npos ? n_bytes : value.find('\0'));
  return value;
}

void h5_write_attr_i64s(hid_t owner, const std::string& owner_label, const std::string& name,
                        const std::vector<int64_t>& values) {
  const std::string label = attr_label(owner_label, name);
  const H5Space space =
      values.empty() ? H5Space::null(label) : H5Space::simple_1d(values.size(), label);
  H5Attribute attr = H5Attribute::create(owner, owner_label, name, H5T_STD_I64LE, space.get());
  if (!values.empty()) {
    QF_H5_CHECK(H5Awrite(attr.get(), H5T_NATIVE_INT64, values.data()), label, "write failed",
                h5_error_text());
  }
  attr.close();
}

std::vector<int64_t> h5_read_attr_i64s(hid_t owner, const std::string& owner_label,
                                       const std::string& name) {
  const std::string label = attr_label(owner_label, name);
  const H5Attribute attr = H5Attribute::open(owner, owner_label, name);
  const H5Type type = H5Type::of_attribute(attr.get(), label);
  QF_CHECK(H5Tequal(type.get(), H5T_STD_I64LE) > 0, label, "is not an int64 attribute");
  const H5Space space = H5Space::of_attribute(attr.get(), label);
  const H5S_class_t space_class = H5Sget_simple_extent_type(space.get());
  if (space_class == H5S_NULL) return {};
  QF_CHECK(space_class == H5S_SIMPLE && H5Sget_simple_extent_ndims(space.get()) == 1, label,
           "is not a 1-D attribute");
  const hssize_t n_elems = H5Sget_simple_extent_npoints(space.get());
  QF_H5_CHECK(n_elems, label, "cannot count elements", h5_error_text());
  std::vector<int64_t> values(static_cast<size_t>(n_elems));
  if (!values.empty()) {
    QF_H5_CHECK(H5Aread(attr.get(), H5T_NATIVE_INT64, values.data()), label, "read failed",
                h5_error_text());
  }
  return values;
}

void h5_write_attr_i64(hid_t owner, const std::string& owner_label, const std::string& name,
                       int64_t value) {
  h5_write_attr_i64s(owner, owner_label, name, {value});
}

int64_t h5_read_attr_i64(hid_t owner, const std::string& owner_label, const std::string& name) {
  const std::vector<int64_t> values = h5_read_attr_i64s(owner, owner_label, name);
  QF_CHECK(values.size() == 1, attr_label(owner_label, name), "holds", values.size(),
           "values, expected one");
  return values[0];
}

std::vector<std::string> h5_attr_names(hid_t owner, const std::string& owner_label) {
  std::vector<std::string> names;
  hsize_t index = 0;
  QF_H5_CHECK(H5Aiterate2(owner, H5_INDEX_NAME, H5_ITER_INC, &index, collect_attr_name, &names),
              owner_label, "cannot list attributes", h5_error_text());
  return names;
}

// ---- 1-D datasets ------------------------------------------------------------------------------

H5Dataset h5_write_dataset_1d(hid_t parent, const std::string& parent_label,
                              const std::string& name, hid_t file_type, hid_t mem_type,
                              size_t elem_n_bytes, const void* data, uint64_t n_elems) {
  const std::string label = h5_child_label(parent_label, name);
  const H5Space space = H5Space::simple_1d(n_elems, label);
  H5Dataset dataset = H5Dataset::create(parent, parent_label, name, file_type, space.get());
  if (n_elems == 0) return dataset;
  const auto* bytes = static_cast<const uint8_t*>(data);
  for_each_slice(
      dataset, elem_n_bytes, n_elems, [&](hid_t file_space, hid_t mem_space, uint64_t offset) {
        QF_H5_CHECK(
            H5Dwrite(dataset.get(), mem_type, mem_space, file_space, H5P_DEFAULT, bytes + offset),
            label, "write of", n_elems, "elements failed", h5_error_text());
      });
  return dataset;
}

H5Dataset h5_open_dataset_1d(hid_t parent, const std::string& parent_label, const std::string& name,
                             hid_t file_type, uint64_t* n_elems) {
  H5Dataset dataset = H5Dataset::open(parent, parent_label, name);
  const H5Type type = H5Type::of_dataset(dataset.get(), dataset.label());
  QF_CHECK(H5Tequal(type.get(), file_type) > 0, dataset.label(),
           "has an unexpected element type (class", static_cast<int>(H5Tget_class(type.get())),
           "size", H5Tget_size(type.get()), ")");
  const H5Space space = H5Space::of_dataset(dataset.get(), dataset.label());
  QF_CHECK(H5Sget_simple_extent_type(space.get()) == H5S_SIMPLE &&
               H5Sget_simple_extent_ndims(space.get()) == 1,
           dataset.label(), "is not a 1-D dataset");
  const hssize_t n_points = H5Sget_simple_extent_npoints(space.get());
  QF_H5_CHECK(n_points, dataset.label(), "cannot count elements", h5_error_text());
  *n_elems = static_cast<uint64_t>(n_points);
  return dataset;
}

void h5_read_dataset_1d(const H5Dataset& dataset, hid_t mem_type, size_t elem_n_bytes, void* data,
                        uint64_t n_elems) {
  if (n_elems == 0) return;
  auto* bytes = static_cast<uint8_t*>(data);
  for_each_slice(
      dataset, elem_n_bytes, n_elems, [&](hid_t file_space, hid_t mem_space, uint64_t offset) {
        QF_H5_CHECK(
            H5Dread(dataset.get(), mem_type, mem_space, file_space, H5P_DEFAULT, bytes + offset),
            dataset.label(), "read of", n_elems, "elements failed", h5_error_text());
      });
}

// ---- listings ----------------------------------------------------------------------------------

std::vector<std::string> h5_link_names(hid_t group, const std::string& group_label) {
  H5G_info_t info{};
  QF_H5_CHECK(H5Gget_info(group, &info), group_label, "cannot read group info", h5_error_text());
  std::vector<std::string> names;
  names.reserve(info.nlinks);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n_chars =
        H5Lget_name_by_idx(group, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    QF_H5_CHECK(n_chars, group_label, "cannot read the name of link", i, h5_error_text());
    std::string name(static_cast<size_t>(n_chars) + 1, '\0');
    QF_H5_CHECK(H5Lget_name_by_idx(group, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, name.data(),
                                   name.size(), H5P_DEFAULT),
                group_label, "cannot read the name of link", i, h5_error_text());
    name.resize(static_cast<size_t>(n_chars));
    names.push_back(std::move(name));
  }
  return names;
}

}  // namespace qf::formats
