// model.safetensors.index.json: read with validation, write atomically (FORMATS.md section 5).
// Owns: the index file's schema. Does not own: checking shards against it (CheckpointDir).
#include "formats/shard_index.hpp"

#include <cstdio>
#include <set>

#include "core/check.hpp"
#include "formats/atomic_file.hpp"

namespace qf::formats {
namespace {
// Shard names in an index are plain file names beside the index: no directories, no escapes.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}
}  // namespace

ShardIndex ShardIndex::read(const std::string& path) {
  const nlohmann::json root = read_json_file(path);
  QF_CHECK(root.is_object(), path + ":", "index must be a JSON object, not", root.type_name());
  const auto map_it = root.find("weight_map");
  QF_CHECK(map_it != root.end(), path + ":", "index has no weight_map");
  QF_CHECK(map_it->is_object(), path + ":", "weight_map must be an object, not",
           map_it->type_name());

  ShardIndex index;
  for (const auto& item : map_it->items()) {
    QF_CHECK(item.value().is_string(), path + ":",
             "weight_map entry for tensor '" + item.key() + "'", "must be a string, not",
             item.value().type_name());
    const auto& file = item.value().get_ref<const std::string&>();
    QF_CHECK(is_plain_file_name(file), path + ":",
             "weight_map entry for tensor '" + item.key() + "'",
             "is not a plain file name: '" + file + "'");
    index.weight_map.emplace(item.key(), file);
  }
  const auto meta_it = root.find("metadata");
  if (meta_it != root.end() && !meta_it->is_null()) {
    QF_CHECK(meta_it->is_object(), path + ":", "index metadata must be an object, not",
             meta_it->type_name());
    index.metadata = *meta_it;
  }
  return index;
}

void ShardIndex::write(const std::string& path) const {
  QF_CHECK(metadata.is_object(), path + ":", "index metadata must be an object, not",
           metadata.type_name());
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  root["metadata"] = nlohmann::ordered_json::parse(metadata.dump());
  root["weight_map"] = nlohmann::ordered_json::object();
  for (const auto& [name, file] : weight_map) {
    QF_CHECK(is_plain_file_name(file), path + ":", "tensor '" + name + "' maps to",
             "'" + file + "',", "not a plain file name");
    root["weight_map"][name] = file;
  }
  std::string text;
  try {
    text = root.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {  // a name that is not valid UTF-8
    QF_FAIL(path + ":", "cannot serialize the index:", e.what());
  }
  write_file_atomic(path, text);
}

std::vector<std::string> ShardIndex::shard_files() const {
  std::set<std::string> files;
  for (const auto& item : weight_map) files.insert(item.second);
  return {files.begin(), files.end()};
}

std::string shard_file_name(int index_1based, int n_shards) {
  QF_CHECK(n_shards >= 1 && index_1based >= 1 && index_1based <= n_shards, "shard", index_1based,
           "of", n_shards, "is out of range");
  char name[64];
  std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", index_1based, n_shards);
  return name;
}

}  // namespace qf::formats
