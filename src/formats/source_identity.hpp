// The identity of a source checkpoint's files across the runs of one work store (issue 18
// defect 9): per file its size, mtime, ctime and inode (a stat: cheap, taken at every start and
// again before the export) and, once computed, the XXH64 of its whole content (each rank hashes
// its share of the files on a background thread while the job runs; `--verify-source` re-hashes
// everything). Owns: taking, comparing and (de)serialising that identity, and the hasher. Does
// not own where it is recorded (rank store manifest) or what a job does on a difference.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "formats/checkpoint_dir.hpp"

namespace qf::formats {

// The part of a run's provenance that names its source (rank stores record it; resume,
// --export-only and `validate --work` compare it): per shard [{name, n_bytes, header_xxh64}]
// (cheap, and it changes with any tensor added, moved or resized), and the XXH64 of config.json
// as parsed (compact dump).
nlohmann::json source_header_digests(const CheckpointDir& source);
std::string source_config_xxh64(const CheckpointDir& source);

struct SourceFileIdentity {
  std::string name;  // relative to the checkpoint directory
  uint64_t n_bytes = 0;
  int64_t mtime_ns = 0;  // st_mtim: changes with every write
  int64_t ctime_ns = 0;  // st_ctim: changes with every write, chmod, rename, and with a restored
                         // mtime (touch -d), which cannot set it back
  uint64_t inode = 0;    // a replaced (re-downloaded, copied) file has another one
  // The content digest; "" until computed. Two kinds: 16 hex digits, the XXH64 of the whole
  // file (stores of earlier versions), or kTensorListDigest + 16 hex digits for a safetensors
  // file, the shard rule of formats/shard_digest.hpp (XXH64 of its header's and each tensor's
  // XXH64), which a job takes from its own reads of every tensor.
  std::string xxh64;
};
inline constexpr const char* kTensorListDigest = "tensors:";
std::string tensor_list_digest_text(uint64_t digest);    // kTensorListDigest + hex
using SourceIdentity = std::vector<SourceFileIdentity>;  // sorted by name

// Stats every file (`names` relative to `dir`, symlinks followed); throws naming a file that is
// gone or not a file. No content digest.
SourceIdentity stat_source_files(const std::string& dir, const std::vector<std::string>& names);

// {"files": [{"name", "n_bytes", "mtime_ns", "ctime_ns", "inode"[, "xxh64" | "tensors_xxh64"]}]}
nlohmann::json source_identity_to_json(const SourceIdentity& identity);
// Throws naming `where` on a malformed document.
SourceIdentity source_identity_from_json(const nlohmann::json& document, const std::string& where);
// Sets one file entry's content digest (either kind) in that JSON form.
void set_source_digest_json(nlohmann::json& entry, const std::string& digest);

// One line per file whose size, mtime, ctime or inode differ between `recorded` and `current`,
// or that only one of them lists: "model-00002-of-00064.safetensors: modified (mtime
// 2026-12-05T14:01:02.123456789Z -> ...), inode 1234 -> 5678". Empty when they agree.
std::vector<std::string> changed_source_files(const SourceIdentity& recorded,
                                              const SourceIdentity& current);

// The content digest of a file (reads it; throws naming it), of the kind `like` has (an earlier
// digest of it; "": a tensor list for *.safetensors, else the whole file). "" when *stop turns
// true on the way (checked between 16 MiB chunks and between tensors: a job's end does not
// wait for a whole 5 GB shard).
std::string source_file_digest(const std::string& path, const std::string& like = "",
                               const std::atomic<bool>* stop = nullptr);

// Hashes files on one background thread at idle I/O priority (it must not slow the job's own
// reads), calling on_digest(name, xxh64 hex) on that thread as each file is done (a file it
// cannot read is skipped with a warning: it is only not recorded). The destructor stops it
// after the file in progress and joins.
class SourceHasher {
 public:
  using OnDigest = std::function<void(const std::string& name, const std::string& digest)>;
  // `paths`: the files to hash, in order; reported by their `names`.
  SourceHasher(std::vector<std::string> names, std::vector<std::string> paths, OnDigest on_digest);
  ~SourceHasher();
  SourceHasher(const SourceHasher&) = delete;
  SourceHasher& operator=(const SourceHasher&) = delete;
  // Waits until every file is hashed (tests; jobs let the destructor stop it).
  void wait();

 private:
  void run();
  std::vector<std::string> names_, paths_;
  OnDigest on_digest_;
  std::atomic<bool> stopping_{false};
  std::thread worker_;
};

}  // namespace qf::formats
