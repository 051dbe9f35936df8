// Shard digests and the checksums manifest (see shard_digest.hpp).
#include "formats/shard_digest.hpp"

#include <algorithm>

#include "core/check.hpp"
#include "formats/checksum.hpp"
#include "formats/safetensors_reader.hpp"

namespace qf::formats {
namespace {

void append_le64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(v >> (8 * i)));
}

bool safe_relative_name(const std::string& file) {
  return !file.empty() && file[0] != '/' && file.find("..") == std::string::npos;
}

}  // namespace

uint64_t combine_shard_digest(uint64_t header_digest,
                              const std::vector<uint64_t>& tensor_digests_in_file_order) {
  std::vector<uint8_t> list;
  list.reserve(8 * (1 + tensor_digests_in_file_order.size()));
  append_le64(list, header_digest);
  for (uint64_t d : tensor_digests_in_file_order) append_le64(list, d);
  return checksum64(list.data(), list.size());
}

bool shard_digest_of_file(const std::string& path, const std::atomic<bool>* stop,
                          uint64_t* digest) {
  const SafetensorsReader reader(path);  // validates the header: tensors tile the data region
  const FileDescriptor fd = open_for_read(path);
  std::vector<uint64_t> tensors(reader.tensors().size());
  for (size_t i = 0; i < tensors.size(); ++i) {  // in data-offset order
    const TensorInfo& t = reader.tensors()[i];
    if (!checksum_range(fd, reader.data_offset() + t.begin, t.end - t.begin, stop, &tensors[i])) {
      return false;
    }
  }
  *digest = combine_shard_digest(checksum_range(fd, 0, reader.data_offset()), tensors);
  return true;
}

uint64_t shard_digest_of_file(const std::string& path) {
  uint64_t digest = 0;
  shard_digest_of_file(path, nullptr, &digest);
  return digest;
}

nlohmann::json checksums_manifest_json(const std::map<std::string, uint64_t>& files) {
  nlohmann::json entries = nlohmann::json::object();
  for (const auto& [file, digest] : files) entries[file] = checksum_hex(digest);
  return {{"format", kChecksumsFormatV2}, {"files", entries}};
}

ChecksumsManifest parse_checksums_manifest(const nlohmann::json& document,
                                           const std::string& where) {
  QF_CHECK(document.is_object(), where + ":", "must be a JSON object");
  ChecksumsManifest manifest;
  const nlohmann::json* entries = &document;
  if (document.contains("format")) {
    QF_CHECK(document["format"] == kChecksumsFormatV2, where + ":", "unknown format",
             document["format"].dump(), "(this quantforge reads", kChecksumsFormatV2,
             "and the unversioned {file: xxh64} of earlier exports)");
    QF_CHECK(document.contains("files") && document["files"].is_object(), where + ":",
             "\"files\" must be an object {file: 16 hex digits}");
    entries = &document["files"];
  } else {
    manifest.version = 1;
  }
  for (const auto& [file, value] : entries->items()) {
    uint64_t digest = 0;
    if (!safe_relative_name(file) || !value.is_string() ||
        !parse_checksum_hex(value.get<std::string>(), &digest)) {
      manifest.problems.push_back("entry " + file + ": " + value.dump() +
                                  " is not a relative file name with 16 hex digits");
      continue;
    }
    manifest.files[file] = digest;
  }
  return manifest;
}

uint64_t manifest_digest_of_file(const ChecksumsManifest& manifest, const std::string& path) {
  return manifest.version == 1 ? checksum_file(path).digest : shard_digest_of_file(path);
}

}  // namespace qf::formats
