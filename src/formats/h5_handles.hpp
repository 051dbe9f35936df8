// Move-only owners of HDF5 identifiers (file, group, dataset, dataspace, datatype, attribute,
// property list) and the HDF5 error-text helper for QF_H5_CHECK messages.
// Owns: id lifetimes and file-open settings. Does not own: reading or writing data (h5_io).
#pragma once
#include <hdf5.h>

#include <string>

namespace qf::formats {

// Turns off HDF5's automatic error-stack printing to stderr (once per process): every failure
// surfaces as a qf::Error instead, naming the file and object. Every factory below calls it.
void h5_silence_auto_errors();

// The most specific entries of the current HDF5 error stack as one line ("H5F__super_read:
// truncated file: eof = 96 ..."), for the message of a failed QF_H5_CHECK; "" when empty.
std::string h5_error_text();

// Owner of one hid_t closed by kClose. `label()` names the object in every error
// ("WORK/rank-0/layer-0003.quant.h5:/tensors/w1"). The destructor closes and logs a failure;
// close() is the checked variant for the write path.
template <herr_t (*kClose)(hid_t)>
class H5Handle {
 public:
  H5Handle() = default;
  // Takes ownership of a valid id (factories check the id before calling this).
  H5Handle(hid_t id, std::string label) : id_(id), label_(std::move(label)) {}
  ~H5Handle() { close_noexcept(); }
  H5Handle(H5Handle&& other) noexcept : id_(other.id_), label_(std::move(other.label_)) {
    other.id_ = H5I_INVALID_HID;
  }
  H5Handle& operator=(H5Handle&& other) noexcept {
    if (this != &other) {
      close_noexcept();
      id_ = other.id_;
      label_ = std::move(other.label_);
      other.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  const std::string& label() const { return label_; }
  void close();  // throws qf::Error naming label()

 private:
  void close_noexcept() noexcept;

  hid_t id_ = H5I_INVALID_HID;
  std::string label_;
};

class H5PropList : public H5Handle<H5Pclose> {
 public:
  using H5Handle::H5Handle;
  // H5Pcreate(cls), e.g. H5P_FILE_ACCESS; `label` names the file/object it is for.
  static H5PropList create(hid_t cls, const std::string& label);
};

class H5File : public H5Handle<H5Fclose> {
 public:
  using H5Handle::H5Handle;
  // Creates (truncating) a file with the store's deterministic settings: HDF5 1.8 object
  // format (dense attributes, link creation order; readable by HDF5 >= 1.8), no object
  // timestamps, root links tracked in creation order, HDF5's own file locking off (callers
  // own locking), strict close (closing with objects still open is an error).
  static H5File create(const std::string& path);
  static H5File open_read_only(const std::string& path);
};

class H5Group : public H5Handle<H5Gclose> {
 public:
  using H5Handle::H5Handle;
  // A child group that tracks link creation order and stores no timestamps.
  static H5Group create(hid_t parent, const std::string& parent_label, const std::string& name);
  static H5Group open(hid_t parent, const std::string& parent_label, const std::string& name);
};

class H5Space : public H5Handle<H5Sclose> {
 public:
  using H5Handle::H5Handle;
  static H5Space simple_1d(hsize_t n_elems, const std::string& label);  // n_elems may be 0
  static H5Space null(const std::string& label);                        // no elements at all
  static H5Space scalar(const std::string& label);
  static H5Space of_dataset(hid_t dataset, const std::string& label);
  static H5Space of_attribute(hid_t attribute, const std::string& label);
};

class H5Type : public H5Handle<H5Tclose> {
 public:
  using H5Handle::H5Handle;
  // Fixed-length UTF-8 string of n_bytes (>= 1), NUL-padded.
  static H5Type string_utf8(size_t n_bytes, const std::string& label);
  static H5Type of_dataset(hid_t dataset, const std::string& label);
  static H5Type of_attribute(hid_t attribute, const std::string& label);
};

class H5Dataset : public H5Handle<H5Dclose> {
 public:
  using H5Handle::H5Handle;
  // Contiguous layout, no fill writes, no timestamps.
  static H5Dataset create(hid_t parent, const std::string& parent_label, const std::string& name,
                          hid_t file_type, hid_t space);
  static H5Dataset open(hid_t parent, const std::string& parent_label, const std::string& name);
};

class H5Attribute : public H5Handle<H5Aclose> {
 public:
  using H5Handle::H5Handle;
  static H5Attribute create(hid_t owner, const std::string& owner_label, const std::string& name,
                            hid_t file_type, hid_t space);
  static H5Attribute open(hid_t owner, const std::string& owner_label, const std::string& name);
};

// "<parent>/<name>" with exactly one slash ("f.h5:" + "/" + "tensors" -> "f.h5:/tensors").
std::string h5_child_label(const std::string& parent_label, const std::string& name);

}  // namespace qf::formats
