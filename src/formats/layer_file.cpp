// LayerRecord <-> HDF5 layer file. Tensors are raw byte datasets with dtype/shape attributes so
// that every dtype (F4, F8_E4M3, BF16, ...) round-trips byte-exactly.
#include "formats/layer_file.hpp"

#include <algorithm>
#include <optional>
#include <vector>

#include "core/check.hpp"
#include "formats/checksum.hpp"
#include "formats/h5_handles.hpp"
#include "formats/h5_io.hpp"
#include "formats/tensor_spec.hpp"

namespace qf::formats {
namespace {

constexpr const char* kTensorsGroup = "tensors";
constexpr const char* kF32Group = "f32";
constexpr const char* kI64Group = "i64";
constexpr const char* kAttrsGroup = "attrs";

// A derived tensor's dataset is empty; these attributes say how the source rebuilds it.
constexpr const char* kDerivedFromAttr = "derived_from";
constexpr const char* kDerivationAttr = "derivation";
constexpr const char* kDerivedXxh64Attr = "derived_xxh64";
constexpr const char* kDerivationShiftAttr = "derivation_shift";  // block-scale rule only
// Version 2 added derived tensors, 3 the block-scale rule; a file is written with the lowest
// version that holds its tensors, which older builds still read.
constexpr int64_t kFirstVersionWithDerived = 2;
constexpr int64_t kFirstVersionWithShift = 3;

int64_t format_version_of(const LayerRecord& record) {
  int64_t version = 1;
  for (const StoredTensor& tensor : record.tensors) {
    if (!tensor.derived) continue;
    version =
        std::max(version, derivation_takes_shift(tensor.derived->rule) ? kFirstVersionWithShift
                                                                       : kFirstVersionWithDerived);
  }
  return version;
}

void write_tensors(const H5File& file, const LayerRecord& record) {
  H5Group group = H5Group::create(file.get(), file.label(), kTensorsGroup);
  for (const StoredTensor& tensor : record.tensors) {
    const uint64_t n_bytes_written = tensor.derived ? 0 : tensor.bytes.size();
    H5Dataset dataset =
        h5_write_dataset_1d(group.get(), group.label(), tensor.name, H5T_STD_U8LE, H5T_NATIVE_UINT8,
                            1, tensor.bytes.data(), n_bytes_written);
    h5_write_attr_string(dataset.get(), dataset.label(), "dtype", dtype_name(tensor.dtype));
    h5_write_attr_i64s(dataset.get(), dataset.label(), "shape", tensor.shape);
    if (tensor.derived) {
      h5_write_attr_string(dataset.get(), dataset.label(), kDerivedFromAttr,
                           tensor.derived->source);
      h5_write_attr_string(dataset.get(), dataset.label(), kDerivationAttr,
                           derivation_rules().name(tensor.derived->rule));
      h5_write_attr_string(dataset.get(), dataset.label(), kDerivedXxh64Attr,
                           checksum_hex(tensor.derived->xxh64));
      if (derivation_takes_shift(tensor.derived->rule)) {
        h5_write_attr_i64(dataset.get(), dataset.label(), kDerivationShiftAttr,
                          tensor.derived->shift);
      }
    }
    dataset.close();
  }
  group.close();
}

// The derivation attributes of a dataset, if it has them (all three, or none; plus the shift
// for the block-scale rule).
std::optional<SourceDerivation> read_derivation(const H5Dataset& dataset, int64_t format_version) {
  const std::vector<std::string> attrs = h5_attr_names(dataset.get(), dataset.label());
  const bool has = std::find(attrs.begin(), attrs.end(), kDerivedFromAttr) != attrs.end();
  if (!has) return std::nullopt;
  QF_CHECK(format_version >= kFirstVersionWithDerived, dataset.label() + ":",
           "a derived tensor in a layer file of format version", format_version,
           "(derived tensors need version", kFirstVersionWithDerived, ")");
  SourceDerivation derived;
  derived.source = h5_read_attr_string(dataset.get(), dataset.label(), kDerivedFromAttr);
  const std::string rule = h5_read_attr_string(dataset.get(), dataset.label(), kDerivationAttr);
  QF_CHECK(derivation_rules().contains(rule), dataset.label() + ":",
           "unknown derivation rule \"" + rule + "\" (this build knows",
           derivation_rules().names(", ") + ")");
  derived.rule = derivation_rules().parse(rule);
  const std::string hex = h5_read_attr_string(dataset.get(), dataset.label(), kDerivedXxh64Attr);
  QF_CHECK(parse_checksum_hex(hex, &derived.xxh64), dataset.label() + ":",
           "derived_xxh64 \"" + hex + "\" is not 16 hex digits");
  if (derivation_takes_shift(derived.rule)) {
    QF_CHECK(format_version >= kFirstVersionWithShift, dataset.label() + ":", "derivation", rule,
             "in a layer file of format version", format_version, "(it needs version",
             kFirstVersionWithShift, ")");
    const int64_t shift = h5_read_attr_i64(dataset.get(), dataset.label(), kDerivationShiftAttr);
    QF_CHECK(shift >= -1000 && shift <= 1000, dataset.label() + ":", kDerivationShiftAttr, shift,
             "is outside [-1000, 1000]");
    derived.shift = static_cast<int32_t>(shift);
  }
  return derived;
}

StoredTensor read_tensor(const H5Group& group, const std::string& name, int64_t format_version) {
  StoredTensor tensor;
  tensor.name = name;
  uint64_t n_bytes = 0;
  const H5Dataset dataset =
      h5_open_dataset_1d(group.get(), group.label(), name, H5T_STD_U8LE, &n_bytes);
  const std::string dtype_text = h5_read_attr_string(dataset.get(), dataset.label(), "dtype");
  QF_CHECK(parse_dtype(dtype_text, &tensor.dtype), dataset.label() + ":", "unknown dtype",
           "\"" + dtype_text + "\"");
  tensor.shape = h5_read_attr_i64s(dataset.get(), dataset.label(), "shape");
  const uint64_t expected =
      tensor_n_bytes(tensor.dtype, shape_n_elems(tensor.shape, dataset.label()), dataset.label());
  tensor.derived = read_derivation(dataset, format_version);
  if (tensor.derived) {
    QF_CHECK(n_bytes == 0, dataset.label() + ":", "a derived tensor's dataset holds", n_bytes,
             "bytes (a derived tensor is stored empty)");
    return tensor;
  }
  QF_CHECK(expected == n_bytes, dataset.label() + ":", dtype_text, shape_str(tensor.shape), "needs",
           expected, "bytes but the dataset holds", n_bytes);
  tensor.bytes.resize(n_bytes);
  h5_read_dataset_1d(dataset, H5T_NATIVE_UINT8, 1, tensor.bytes.data(), n_bytes);
  return tensor;
}

template <typename T>
void write_arrays(const H5File& file, const char* group_name,
                  const std::map<std::string, std::vector<T>>& arrays, hid_t file_type,
                  hid_t mem_type) {
  H5Group group = H5Group::create(file.get(), file.label(), group_name);
  for (const auto& [key, values] : arrays) {
    h5_write_dataset_1d(group.get(), group.label(), key, file_type, mem_type, sizeof(T),
                        values.data(), values.size())
        .close();
  }
  group.close();
}

template <typename T>
std::map<std::string, std::vector<T>> read_arrays(const H5File& file, const char* group_name,
                                                  hid_t file_type, hid_t mem_type) {
  const H5Group group = H5Group::open(file.get(), file.label(), group_name);
  std::map<std::string, std::vector<T>> arrays;
  for (const std::string& key : h5_link_names(group.get(), group.label())) {
    arrays[key] = h5_read_vector_1d<T>(group.get(), group.label(), key, file_type, mem_type);
  }
  return arrays;
}

}  // namespace

void write_layer_file(const std::string& path, const LayerRecord& record, const std::string& stage,
                      int rank) {
  validate_layer_record(record, path);
  H5File file = H5File::create(path);
  h5_write_attr_string(file.get(), file.label(), "format", kLayerFileFormat);
  h5_write_attr_i64(file.get(), file.label(), "format_version", format_version_of(record));
  h5_write_attr_i64(file.get(), file.label(), "layer", record.layer);
  h5_write_attr_string(file.get(), file.label(), "stage", stage);
  h5_write_attr_i64(file.get(), file.label(), "rank", rank);

  write_tensors(file, record);
  write_arrays(file, kF32Group, record.f32, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
  write_arrays(file, kI64Group, record.i64, H5T_STD_I64LE, H5T_NATIVE_INT64);
  H5Group attrs = H5Group::create(file.get(), file.label(), kAttrsGroup);
  for (const auto& [key, value] : record.attrs) {
    h5_write_attr_string(attrs.get(), attrs.label(), key, value);
  }
  attrs.close();

  QF_H5_CHECK(H5Fflush(file.get(), H5F_SCOPE_LOCAL), file.label(), "flush failed", h5_error_text());
  file.close();
}

LayerRecord read_layer_file(const std::string& path, LayerFileHeader* header) {
  const H5File file = H5File::open_read_only(path);
  const std::string format = h5_read_attr_string(file.get(), file.label(), "format");
  QF_CHECK(format == kLayerFileFormat, path + ":",
           "not a quantforge layer file (format \"" + format + "\", expected \"" +
               kLayerFileFormat + "\")");
  LayerFileHeader read_header;
  read_header.format_version = h5_read_attr_i64(file.get(), file.label(), "format_version");
  QF_CHECK(read_header.format_version >= 1 && read_header.format_version <= kLayerFileFormatVersion,
           path + ":", "layer file format version", read_header.format_version,
           "is not supported by this build (supports 1 to", kLayerFileFormatVersion, ")");
  read_header.layer = static_cast<int>(h5_read_attr_i64(file.get(), file.label(), "layer"));
  read_header.stage = h5_read_attr_string(file.get(), file.label(), "stage");
  read_header.rank = static_cast<int>(h5_read_attr_i64(file.get(), file.label(), "rank"));

  const std::vector<std::string> groups = h5_link_names(file.get(), file.label());
  const std::vector<std::string> expected_groups = {kTensorsGroup, kF32Group, kI64Group,
                                                    kAttrsGroup};
  QF_CHECK(groups == expected_groups, path + ":",
           "unexpected top-level objects (expected tensors, f32, i64, attrs in that order)");

  LayerRecord record;
  record.layer = read_header.layer;
  {
    const H5Group group = H5Group::open(file.get(), file.label(), kTensorsGroup);
    for (const std::string& name : h5_link_names(group.get(), group.label())) {
      record.tensors.push_back(read_tensor(group, name, read_header.format_version));
    }
  }
  record.f32 = read_arrays<float>(file, kF32Group, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
  record.i64 = read_arrays<int64_t>(file, kI64Group, H5T_STD_I64LE, H5T_NATIVE_INT64);
  {
    const H5Group attrs = H5Group::open(file.get(), file.label(), kAttrsGroup);
    for (const std::string& key : h5_attr_names(attrs.get(), attrs.label())) {
      record.attrs[key] = h5_read_attr_string(attrs.get(), attrs.label(), key);
    }
  }
  validate_layer_record(record, path);
  if (header) *header = read_header;
  return record;
}

}  // namespace qf::formats
