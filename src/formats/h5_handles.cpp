// HDF5 id owners: checked factories, strict file settings, logged closes and error-stack text.
// Every HDF5 call is wrapped in QF_H5_CHECK with the object's label and h5_error_text().
#include "formats/h5_handles.hpp"

#include <mutex>
#include <vector>

#include "core/check.hpp"
#include "core/log.hpp"

namespace qf::formats {
namespace {

// H5Ewalk2 callback: collects "function: description (minor message)" per stack entry.
herr_t collect_error_entry(unsigned /*n*/, const H5E_error2_t* entry, void* client_data) {
  auto* lines = static_cast<std::vector<std::string>*>(client_data);
  std::string line = entry->func_name ? entry->func_name : "?";
  if (entry->desc && *entry->desc) line += std::string(": ") + entry->desc;
  char minor[160] = {0};
  if (H5Eget_msg(entry->min_num, nullptr, minor, sizeof(minor)) > 0) {
    line += std::string(" (") + minor + ")";
  }
  lines->push_back(std::move(line));
  return 0;
}

// File access settings shared by create and open; see H5File::create.
H5PropList make_file_access(const std::string& label) {
  H5PropList fapl = H5PropList::create(H5P_FILE_ACCESS, label);
#if H5_VERSION_GE(1, 10, 2)
  QF_H5_CHECK(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18), label,
              "cannot set the HDF5 format version", h5_error_text());
#else
  QF_H5_CHECK(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), label,
              "cannot set the HDF5 format version", h5_error_text());
#endif
#if H5_VERSION_GE(1, 10, 7)
  // HDF5's flock-based locking fails on some parallel file systems (Lustre without -o flock);
  // the rank store serialises writers itself and files are immutable once renamed into place.
  QF_H5_CHECK(H5Pset_file_locking(fapl.get(), false, true), label,
              "cannot turn off HDF5 file locking", h5_error_text());
#endif
  QF_H5_CHECK(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_SEMI), label,
              "cannot set the file close degree", h5_error_text());
  return fapl;
}

// Creation order tracked (so readers list links as written) and no timestamps (so equal
// records give equal bytes). Valid for group and file creation lists.
void set_group_creation(hid_t plist, const std::string& label) {
  QF_H5_CHECK(H5Pset_link_creation_order(plist, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED),
              label, "cannot track link creation order", h5_error_text());
  QF_H5_CHECK(H5Pset_obj_track_times(plist, false), label, "cannot turn off timestamps",
              h5_error_text());
}

// Link names are UTF-8 (tensor names come from JSON).
H5PropList make_link_creation(const std::string& label) {
  H5PropList lcpl = H5PropList::create(H5P_LINK_CREATE, label);
  QF_H5_CHECK(H5Pset_char_encoding(lcpl.get(), H5T_CSET_UTF8), label, "cannot set UTF-8 link names",
              h5_error_text());
  return lcpl;
}

// HDF5 registers H5_term_library with atexit at its first call. After a failed H5Fclose (e.g.
// ENOSPC while flushing a layer file) that exit-time cleanup closes the half-closed file again
// and crashes (SIGSEGV in H5F__close_cb, HDF5 1.10), turning a clear error exit into a signal.
// Every handle is closed explicitly, so skip the exit-time cleanup; this must run before the
// library's first initialisation, hence a static initialiser.
const bool kNoHdf5Atexit = [] {
  H5dont_atexit();
  return true;
}();

}  // namespace

// ---- errors ------------------------------------------------------------------------------------

void h5_silence_auto_errors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

std::string h5_error_text() {
  std::vector<std::string> lines;
  if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error_entry, &lines) < 0) return "";
  // The innermost entries say what went wrong; the outer ones only repeat the API call.
  constexpr size_t kMaxEntries = 3;
  std::string text;
  for (size_t i = 0; i < lines.size() && i < kMaxEntries; ++i) {
    text += (i == 0 ? "[HDF5: " : "; ") + lines[i];
  }
  return text.empty() ? text : text + "]";
}

// ---- H5Handle ----------------------------------------------------------------------------------

template <herr_t (*kClose)(hid_t)>
void H5Handle<kClose>::close() {
  if (id_ < 0) return;
  const hid_t id = id_;
  id_ = H5I_INVALID_HID;  // never close twice, even if this close fails
  QF_H5_CHECK(kClose(id), label_, "close failed", h5_error_text());
}

template <herr_t (*kClose)(hid_t)>
void H5Handle<kClose>::close_noexcept() noexcept {
  if (id_ < 0) return;
  if (kClose(id_) < 0) log_warn(label_, " HDF5 close failed ", h5_error_text());
  id_ = H5I_INVALID_HID;
}

template class H5Handle<H5Pclose>;
template class H5Handle<H5Fclose>;
template class H5Handle<H5Gclose>;
template class H5Handle<H5Sclose>;
template class H5Handle<H5Tclose>;
template class H5Handle<H5Dclose>;
template class H5Handle<H5Aclose>;

std::string h5_child_label(const std::string& parent_label, const std::string& name) {
  if (!parent_label.empty() && parent_label.back() == '/') return parent_label + name;
  return parent_label + "/" + name;
}

// ---- factories ---------------------------------------------------------------------------------

H5PropList H5PropList::create(hid_t cls, const std::string& label) {
  h5_silence_auto_errors();
  const hid_t id = H5Pcreate(cls);
  QF_H5_CHECK(id, label, "cannot create a property list", h5_error_text());
  return H5PropList(id, label);
}

H5File H5File::create(const std::string& path) {
  const std::string label = path + ":";
  H5PropList fcpl = H5PropList::create(H5P_FILE_CREATE, label);
  set_group_creation(fcpl.get(), label);
  const H5PropList fapl = make_file_access(label);
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get());
  QF_H5_CHECK(id, label, "cannot create HDF5 file", h5_error_text());
  return H5File(id, label);
}

H5File H5File::open_read_only(const std::string& path) {
  const std::string label = path + ":";
  const H5PropList fapl = make_file_access(label);
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  QF_H5_CHECK(id, label, "cannot open as an HDF5 file", h5_error_text());
  return H5File(id, label);
}

H5Group H5Group::create(hid_t parent, const std::string& parent_label, const std::string& name) {
  const std::string label = h5_child_label(parent_label, name);
  const H5PropList lcpl = make_link_creation(label);
  H5PropList gcpl = H5PropList::create(H5P_GROUP_CREATE, label);
  set_group_creation(gcpl.get(), label);
  const hid_t id = H5Gcreate2(parent, name.c_str(), lcpl.get(), gcpl.get(), H5P_DEFAULT);
  QF_H5_CHECK(id, label, "cannot create group", h5_error_text());
  return H5Group(id, label);
}

H5Group H5Group::open(hid_t parent, const std::string& parent_label, const std::string& name) {
  h5_silence_auto_errors();
  const std::string label = h5_child_label(parent_label, name);
  const hid_t id = H5Gopen2(parent, name.c_str(), H5P_DEFAULT);
  QF_H5_CHECK(id, label, "cannot open group", h5_error_text());
  return H5Group(id, label);
}

H5Space H5Space::simple_1d(hsize_t n_elems, const std::string& label) {
  h5_silence_auto_errors();
  const hid_t id = H5Screate_simple(1, &n_elems, nullptr);
  QF_H5_CHECK(id, label, "cannot create a dataspace of", n_elems, "elements", h5_error_text());
  return H5Space(id, label);
}

H5Space H5Space::null(const std::string& label) {
  h5_silence_auto_errors();
  const hid_t id = H5Screate(H5S_NULL);
  QF_H5_CHECK(id, label, "cannot create a null dataspace", h5_error_text());
  return H5Space(id, label);
}

H5Space H5Space::scalar(const std::string& label) {
  h5_silence_auto_errors();
  const hid_t id = H5Screate(H5S_SCALAR);
  QF_H5_CHECK(id, label, "cannot create a scalar dataspace", h5_error_text());
  return H5Space(id, label);
}

H5Space H5Space::of_dataset(hid_t dataset, const std::string& label) {
  const hid_t id = H5Dget_space(dataset);
  QF_H5_CHECK(id, label, "cannot get the dataspace", h5_error_text());
  return H5Space(id, label);
}

H5Space H5Space::of_attribute(hid_t attribute, const std::string& label) {
  const hid_t id = H5Aget_space(attribute);
  QF_H5_CHECK(id, label, "cannot get the dataspace", h5_error_text());
  return H5Space(id, label);
}

H5Type H5Type::string_utf8(size_t n_bytes, const std::string& label) {
  h5_silence_auto_errors();
  QF_CHECK(n_bytes >= 1, label, "fixed-length strings need at least one byte");
  const hid_t id = H5Tcopy(H5T_C_S1);
  QF_H5_CHECK(id, label, "cannot copy the string type", h5_error_text());
  H5Type type(id, label);
  QF_H5_CHECK(H5Tset_size(id, n_bytes), label, "cannot size a string type", h5_error_text());
  QF_H5_CHECK(H5Tset_cset(id, H5T_CSET_UTF8), label, "cannot set UTF-8", h5_error_text());
  QF_H5_CHECK(H5Tset_strpad(id, H5T_STR_NULLPAD), label, "cannot set padding", h5_error_text());
  return type;
}

H5Type H5Type::of_dataset(hid_t dataset, const std::string& label) {
  const hid_t id = H5Dget_type(dataset);
  QF_H5_CHECK(id, label, "cannot get the datatype", h5_error_text());
  return H5Type(id, label);
}

H5Type H5Type::of_attribute(hid_t attribute, const std::string& label) {
  const hid_t id = H5Aget_type(attribute);
  QF_H5_CHECK(id, label, "cannot get the datatype", h5_error_text());
  return H5Type(id, label);
}

H5Dataset H5Dataset::create(hid_t parent, const std::string& parent_label, const std::string& name,
                            hid_t file_type, hid_t space) {
  const std::string label = h5_child_label(parent_label, name);
  const H5PropList lcpl = make_link_creation(label);
  H5PropList dcpl = H5PropList::create(H5P_DATASET_CREATE, label);
  QF_H5_CHECK(H5Pset_obj_track_times(dcpl.get(), false), label, "cannot turn off timestamps",
              h5_error_text());
  QF_H5_CHECK(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), label,
              "cannot turn off fill writes", h5_error_text());
  const hid_t id =
      H5Dcreate2(parent, name.c_str(), file_type, space, lcpl.get(), dcpl.get(), H5P_DEFAULT);
  QF_H5_CHECK(id, label, "cannot create dataset", h5_error_text());
  return H5Dataset(id, label);
}

H5Dataset H5Dataset::open(hid_t parent, const std::string& parent_label, const std::string& name) {
  h5_silence_auto_errors();
  const std::string label = h5_child_label(parent_label, name);
  const hid_t id = H5Dopen2(parent, name.c_str(), H5P_DEFAULT);
  QF_H5_CHECK(id, label, "cannot open dataset", h5_error_text());
  return H5Dataset(id, label);
}

H5Attribute H5Attribute::create(hid_t owner, const std::string& owner_label,
                                const std::string& name, hid_t file_type, hid_t space) {
  const std::string label = owner_label + "@" + name;
  H5PropList acpl = H5PropList::create(H5P_ATTRIBUTE_CREATE, label);
  QF_H5_CHECK(H5Pset_char_encoding(acpl.get(), H5T_CSET_UTF8), label,
              "cannot set a UTF-8 attribute name", h5_error_text());
  const hid_t id = H5Acreate2(owner, name.c_str(), file_type, space, acpl.get(), H5P_DEFAULT);
  QF_H5_CHECK(id, label, "cannot create attribute", h5_error_text());
  return H5Attribute(id, label);
}

H5Attribute H5Attribute::open(hid_t owner, const std::string& owner_label,
                              const std::string& name) {
  h5_silence_auto_errors();
  const std::string label = owner_label + "@" + name;
  const hid_t id = H5Aopen(owner, name.c_str(), H5P_DEFAULT);
  QF_H5_CHECK(id, label, "cannot open attribute", h5_error_text());
  return H5Attribute(id, label);
}

}  // namespace qf::formats
