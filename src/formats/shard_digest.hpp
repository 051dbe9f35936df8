// The integrity manifest of an export (quantforge_checksums.json) and the shard digest it holds.
// Version 2 (issue 19): a shard's digest is the XXH64 of the list of XXH64s of its header region
// ([0, data offset)) and of each tensor's bytes in file order (little-endian u64s), so that every
// rank hashes the tensors it writes, while it writes them, and nobody reads the output back;
// `validate` recomputes the same list from the file. Version 1 (earlier exports, still read):
// the XXH64 of the whole file. The header parser requires the tensors to tile the data region,
// so the list covers every byte of a shard either way.
// Owns: both digest rules, the manifest's JSON form and its parsing. Does not own who hashes.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qf::formats {

inline constexpr const char* kChecksumsFormatV2 = "quantforge-checksums/2";

// The version-2 digest from its parts.
uint64_t combine_shard_digest(uint64_t header_digest,
                              const std::vector<uint64_t>& tensor_digests_in_file_order);
// The version-2 digest of a safetensors file, read from disk (throws naming the file).
uint64_t shard_digest_of_file(const std::string& path);
// The same, given up between chunks when *stop turns true: false, *digest untouched.
bool shard_digest_of_file(const std::string& path, const std::atomic<bool>* stop, uint64_t* digest);

struct ChecksumsManifest {
  int version = 2;
  std::map<std::string, uint64_t> files;  // shard file (relative) -> digest
  std::vector<std::string> problems;      // entries that are not a safe name with 16 hex digits
};

// Version 2: {"format": kChecksumsFormatV2, "files": {file: 16 hex digits}}.
nlohmann::json checksums_manifest_json(const std::map<std::string, uint64_t>& files);
// Either version (v1: {file: hex}); throws naming `where` when the document is neither shape.
// Bad entries are listed in `problems`, not thrown.
ChecksumsManifest parse_checksums_manifest(const nlohmann::json& document,
                                           const std::string& where);
// The digest `manifest` promises for `path`, computed from the file under its version's rule.
uint64_t manifest_digest_of_file(const ChecksumsManifest& manifest, const std::string& path);

}  // namespace qf::formats
