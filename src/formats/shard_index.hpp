// ShardIndex: model.safetensors.index.json (tensor name -> shard file name, plus metadata).
// Owns: reading, validating and atomically writing the index. Does not own: shard contents.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qf::formats {

constexpr const char* kShardIndexFileName = "model.safetensors.index.json";
constexpr const char* kSingleShardFileName = "model.safetensors";

struct ShardIndex {
  std::map<std::string, std::string> weight_map;       // tensor name -> shard file name
  nlohmann::json metadata = nlohmann::json::object();  // e.g. {"total_size": N}

  // Validates: a JSON object without duplicate keys; "weight_map" an object of string values,
  // each a plain file name (no '/', not "." or ".."); "metadata" absent or an object.
  static ShardIndex read(const std::string& path);
  void write(const std::string& path) const;     // atomic (temp + fsync + rename), indent 2
  std::vector<std::string> shard_files() const;  // sorted unique
};

// "model-00003-of-00010.safetensors" (1-based index, as huggingface_hub names shards).
std::string shard_file_name(int index_1based, int n_shards);

}  // namespace qf::formats
