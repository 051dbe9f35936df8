// CheckpointDir: opens every shard of a checkpoint directory and cross-checks them against the
// index. Owns: shard discovery and tensor lookup. Does not own: config.json semantics (model/).
#include "formats/checkpoint_dir.hpp"

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/strings.hpp"
#include "formats/atomic_file.hpp"
#include "formats/posix_file.hpp"

namespace qf::formats {
namespace fs = std::filesystem;
namespace {

bool is_file_or_link_to_file(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error);  // follows symlinks (HF snapshot dirs)
}

}  // namespace

CheckpointDir::CheckpointDir(const std::string& dir) : dir_(dir) {
  std::error_code error;
  QF_CHECK(fs::is_directory(dir_, error), dir_ + ":", "not a directory");
  const fs::path root(dir_);
  const fs::path index_path = root / kShardIndexFileName;
  const std::string index_problem = not_a_regular_file(index_path.string());
  QF_CHECK(index_problem.empty() || index_problem == "is missing", index_path.string() + ":",
           "the index", index_problem);
  if (index_problem.empty()) {
    has_index_ = true;
    index_ = ShardIndex::read(index_path.string());
    QF_CHECK(!index_.weight_map.empty(), index_path.string() + ":", "weight_map is empty");
  } else {
    QF_CHECK(is_file_or_link_to_file(root / kSingleShardFileName), dir_ + ":", "no",
             kShardIndexFileName, "and no", kSingleShardFileName);
  }

  shard_files_ = has_index_ ? index_.shard_files()
                            : std::vector<std::string>{std::string(kSingleShardFileName)};
  for (const std::string& file : shard_files_) {
    const fs::path shard_path = root / file;
    const std::string problem = not_a_regular_file(shard_path.string());
    QF_CHECK(problem.empty(), dir_ + ":", "shard file", file, "listed in", kShardIndexFileName,
             problem);
    shards_.emplace_back(shard_path.string());
  }

  // Every tensor of every shard must be in the index, mapped to that shard; every index entry
  // must be found in its shard. Together: each tensor lives in exactly one shard.
  for (size_t s = 0; s < shards_.size(); ++s) {
    const auto& tensors = shards_[s].tensors();
    for (size_t t = 0; t < tensors.size(); ++t) {
      const std::string& name = tensors[t].name;
      if (has_index_) {
        const auto it = index_.weight_map.find(name);
        QF_CHECK(it != index_.weight_map.end(), dir_ + ":", "tensor '" + name + "' in shard",
                 shard_files_[s], "is not in", kShardIndexFileName);
        QF_CHECK(it->second == shard_files_[s], dir_ + ":", "tensor '" + name + "' is in shard",
                 shard_files_[s], "but", kShardIndexFileName, "maps it to", it->second);
      }
      locations_.emplace(name, Location{s, t});
    }
  }
  if (has_index_) {
    for (const auto& [name, file] : index_.weight_map) {
      QF_CHECK(locations_.count(name) == 1, dir_ + ":", "tensor '" + name + "' is listed in",
               kShardIndexFileName, "for shard", file, "but that shard does not contain it");
    }
  } else {
    for (const auto& item : locations_) index_.weight_map.emplace(item.first, kSingleShardFileName);
  }
}

const SafetensorsReader& CheckpointDir::shard(const std::string& file) const {
  const auto it = std::lower_bound(shard_files_.begin(), shard_files_.end(), file);
  QF_CHECK(it != shard_files_.end() && *it == file, dir_ + ":", "no shard file named", file);
  return shards_[static_cast<size_t>(it - shard_files_.begin())];
}

std::vector<std::string> CheckpointDir::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(locations_.size());
  for (const auto& item : locations_) names.push_back(item.first);
  std::sort(names.begin(), names.end());
  return names;
}

const TensorInfo& CheckpointDir::tensor(const std::string& name,
                                        const SafetensorsReader** shard_out) const {
  const auto it = locations_.find(name);
  QF_CHECK(it != locations_.end(), dir_ + ":", "no tensor named '" + name + "'");
  const SafetensorsReader& reader = shards_[it->second.shard];
  if (shard_out != nullptr) *shard_out = &reader;
  return reader.tensors()[it->second.tensor];
}

std::vector<uint8_t> CheckpointDir::read_tensor(const std::string& name) const {
  const SafetensorsReader* shard = nullptr;
  const TensorInfo& info = tensor(name, &shard);
  return shard->read_tensor(info);
}

bool CheckpointDir::has_tensor(const std::string& name) const {
  return locations_.count(name) != 0;
}

void CheckpointDir::digest_whole_reads(bool on) const {
  for (const auto& shard : shards_) shard.digest_whole_reads(on);
}

nlohmann::json CheckpointDir::read_json(const std::string& file_name) const {
  return read_json_file((fs::path(dir_) / file_name).string());
}

std::vector<std::string> CheckpointDir::other_files() const {
  const std::set<std::string> skip_names(shard_files_.begin(), shard_files_.end());
  std::vector<std::string> files;
  std::error_code error;
  // Relative paths are computed lexically: fs::relative would resolve symlinks (HF snapshots
  // link every file into a blobs/ directory).
  fs::path root = fs::path(dir_).lexically_normal();
  if (!root.has_filename() && root.has_parent_path()) root = root.parent_path();  // "dir/"
  fs::recursive_directory_iterator it(root, error), end;
  QF_CHECK(!error, dir_ + ":", "cannot list directory:", error.message());
  for (; it != end; it.increment(error)) {
    QF_CHECK(!error, dir_ + ":", "cannot list directory:", error.message());
    const std::string base = it->path().filename().string();
    if (it->is_directory(error) && (base == ".cache" || base == "__pycache__")) {
      it.disable_recursion_pending();
      continue;
    }
    if (!is_file_or_link_to_file(it->path())) continue;
    const std::string relative = it->path().lexically_relative(root).generic_string();
    if (relative == kShardIndexFileName || skip_names.count(relative) != 0) continue;
    if (ends_with(relative, ".safetensors")) {
      log_warn(dir_, ": ignoring ", relative, ", a .safetensors file the index does not list");
      continue;
    }
    files.push_back(relative);
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace qf::formats
