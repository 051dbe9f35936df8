// The rank store's manifest.json (fields: rank_store.hpp) and provenance comparison.
// Owns: manifest <-> JSON, its self-checksum, readable provenance diffs. Does not own: files.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qf::formats {

constexpr const char* kStoreManifestFormat = "quantforge.rank_store";
// 2: adds "source" (the source files' identity, formats/source_identity.hpp). Version 1
// manifests are still read (no "source"); every manifest written is version 2.
constexpr int64_t kStoreManifestFormatVersion = 2;

// One committed layer file.
struct StoreFileEntry {
  std::string stage;
  int layer = 0;
  std::string file;  // name inside the rank directory (always layer_file_name(layer, stage))
  uint64_t n_bytes = 0;
  uint64_t checksum = 0;  // Checksum64 (XXH64) of the whole file
};

struct StoreManifest {
  int rank = 0;
  int world_size = 1;
  std::string created;  // UTC, ISO 8601
  std::string updated;
  nlohmann::json provenance = nlohmann::json::object();
  std::vector<StoreFileEntry> files;  // sorted by (stage, layer)
  nlohmann::json source;              // source identity; null: not recorded (a version 1 store)
  int64_t format_version = kStoreManifestFormatVersion;  // as read
};

// Pretty JSON text with the self-checksum field filled in.
std::string manifest_to_text(const StoreManifest& manifest);
// Parses and checks a manifest: format, version, field types, self-checksum, file names equal to
// layer_file_name(layer, stage), no duplicate (stage, layer). Errors start with `path`.
StoreManifest manifest_from_text(const std::string& text, const std::string& path);

// "layer-0003.quant.h5"; stage must satisfy check_stage_name.
std::string layer_file_name(int layer, const std::string& stage);
// Stages are short lower-case identifiers ([a-z][a-z0-9_]*, at most 32 chars).
void check_stage_name(const std::string& stage);
// Parses a layer file name; false for any other name.
bool parse_layer_file_name(const std::string& name, int* layer, std::string* stage);

// Human-readable differences between two provenance documents, one line each:
//   "options.samples: 128 vs 256", "config_hash: (absent) vs \"ab12\"",
//   "source_files[model-00002.safetensors].xxh64: \"…\" vs \"…\"".
// Objects are compared key by key (dotted paths); arrays element by element, except that
// arrays of objects that all have a string "name" are matched by name. Long values are cut.
std::vector<std::string> provenance_differences(const nlohmann::json& a, const nlohmann::json& b);

// Current UTC time, "2025-01-31T12:34:56Z".
std::string utc_timestamp_now();

}  // namespace qf::formats
