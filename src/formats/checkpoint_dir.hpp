// CheckpointDir: a checkpoint directory (index.json + shards, or one model.safetensors).
// Owns: cross-checking index against shard headers, tensor lookup. Does not own: config parsing.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "formats/safetensors_reader.hpp"
#include "formats/shard_index.hpp"

namespace qf::formats {

// Every shard is opened (and its header validated) once, in the constructor, and stays open.
// Const methods are thread-safe.
class CheckpointDir {
 public:
  // Validates: index and shard headers agree (every tensor in exactly one shard, no extras,
  // no missing shard files). Throws qf::Error naming the directory, file and tensor.
  explicit CheckpointDir(const std::string& dir);

  const std::string& dir() const { return dir_; }
  bool has_index() const { return has_index_; }       // false: a lone model.safetensors
  const ShardIndex& index() const { return index_; }  // synthesized when there is no index file
  const std::vector<std::string>& shard_files() const { return shard_files_; }  // sorted names
  const SafetensorsReader& shard(const std::string& file) const;  // opened once, cached
  std::vector<std::string> tensor_names() const;                  // sorted
  // Throws naming dir + tensor if absent.
  const TensorInfo& tensor(const std::string& name,
                           const SafetensorsReader** shard_out = nullptr) const;
  bool has_tensor(const std::string& name) const;
  // The stored bytes of one tensor (throws as tensor() does, or naming the shard on a read error).
  std::vector<uint8_t> read_tensor(const std::string& name) const;
  nlohmann::json read_json(const std::string& file_name) const;  // e.g. config.json
  // Every shard notes the digest of each whole tensor it reads (SafetensorsReader).
  void digest_whole_reads(bool on) const;
  // Regular files that are neither shards nor the index (tokenizer etc.), relative to dir(),
  // sorted; skips .cache/ and __pycache__/ and *.safetensors files the index does not list.
  std::vector<std::string> other_files() const;

 private:
  struct Location {
    size_t shard = 0;   // index into shards_
    size_t tensor = 0;  // index into shards_[shard].tensors()
  };
  std::string dir_;
  bool has_index_ = false;
  ShardIndex index_;
  std::vector<std::string> shard_files_;
  std::vector<SafetensorsReader> shards_;  // parallel to shard_files_
  std::unordered_map<std::string, Location> locations_;
};

}  // namespace qf::formats
