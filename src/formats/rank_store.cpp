// RankStore: directory set-up and locking, the per-layer commit protocol, verification of
// committed files, stray-file clean-up on resume, and the resume-time provenance check.
#include "formats/rank_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "core/check.hpp"
#include "core/log.hpp"
#include "formats/atomic_file.hpp"
#include "formats/checksum.hpp"
#include "formats/file_lock.hpp"
#include "formats/layer_file.hpp"
#include "formats/source_identity.hpp"

namespace qf::formats {
namespace {

constexpr const char* kManifestName = "manifest.json";
constexpr const char* kLockName = "writer.lock";
constexpr size_t kMaxListedProblems = 30;  // longer lists are cut in error messages

bool is_temp_name(const std::string& name) { return name.find(".tmp.") != std::string::npos; }

std::vector<std::string> regular_file_names(const std::string& dir) {
  std::error_code error;
  std::vector<std::string> names;
  for (std::filesystem::directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    std::error_code type_error;
    if (it->is_regular_file(type_error)) names.push_back(it->path().filename().string());
  }
  QF_CHECK(!error, dir + ":", "cannot list the directory:", error.message());
  std::sort(names.begin(), names.end());
  return names;
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string text;
  for (size_t i = 0; i < lines.size() && i < kMaxListedProblems; ++i) text += "\n  " + lines[i];
  if (lines.size() > kMaxListedProblems) {
    text += "\n  ... and " + std::to_string(lines.size() - kMaxListedProblems) + " more";
  }
  return text;
}

// "" if the committed file matches its manifest entry, else one line naming the file.
std::string check_committed_file(const std::string& path, const StoreFileEntry& entry,
                                 StoreVerify verify) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) return path + ": missing, but manifest.json lists it as committed";
    return path + ": cannot stat: " + errno_text(err);
  }
  if (!S_ISREG(st.st_mode)) return path + ": not a regular file";
  const auto n_bytes = static_cast<uint64_t>(st.st_size);
  if (n_bytes != entry.n_bytes) {
    return path + ": " + std::to_string(n_bytes) + " bytes, but manifest.json says " +
           std::to_string(entry.n_bytes) + (n_bytes < entry.n_bytes ? " (truncated)" : "");
  }
  if (verify == StoreVerify::kSizes) return "";
  try {
    const FileChecksum sum = checksum_file(path);
    if (sum.n_bytes != entry.n_bytes || sum.digest != entry.checksum) {
      return path + ": checksum mismatch (xxh64 " + checksum_hex(sum.digest) +
             ", manifest.json says " + checksum_hex(entry.checksum) + "): the file is corrupted";
    }
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

std::vector<std::string> check_committed_files(const std::string& dir,
                                               const StoreManifest& manifest, StoreVerify verify) {
  std::vector<std::string> problems;
  for (const StoreFileEntry& entry : manifest.files) {
    std::string problem = check_committed_file(dir + "/" + entry.file, entry, verify);
    if (!problem.empty()) problems.push_back(std::move(problem));
  }
  return problems;
}

bool is_listed(const StoreManifest& manifest, const std::string& name) {
  return std::any_of(manifest.files.begin(), manifest.files.end(),
                     [&](const StoreFileEntry& entry) { return entry.file == name; });
}

// Temp files and unlisted layer files: what a killed writer leaves behind. The writer removes
// them; a reader only reports them.
void handle_stray_files(const std::string& dir, const StoreManifest& manifest, bool remove) {
  for (const std::string& name : regular_file_names(dir)) {
    int layer = 0;
    std::string stage;
    const bool temp = is_temp_name(name);
    const bool unlisted_layer =
        !temp && parse_layer_file_name(name, &layer, &stage) && !is_listed(manifest, name);
    if (!temp && !unlisted_layer) continue;
    const std::string what = temp ? "leftover temp file from an interrupted write"
                                  : "layer file not committed in manifest.json (interrupted "
                                    "commit; the layer will be recomputed)";
    if (remove) {
      log_warn(dir, "/", name, ": ", what, "; removing it");
      remove_file_noexcept(dir + "/" + name);
    } else {
      log_warn(dir, "/", name, ": ", what, "; ignored (the next resume removes it)");
    }
  }
}

StoreManifest read_manifest(const std::string& dir, int rank) {
  const std::string path = dir + "/" + kManifestName;
  StoreManifest manifest = manifest_from_text(read_file_bytes(path), path);
  QF_CHECK(manifest.rank == rank, path + ":", "belongs to rank", manifest.rank, "not rank", rank,
           "(a copied or renamed rank directory?)");
  return manifest;
}

// Whether the manifest now on disk lists `file`; false when it cannot be read.
bool manifest_on_disk_lists(const std::string& dir, int rank, const std::string& file) noexcept {
  try {
    const StoreManifest manifest = read_manifest(dir, rank);
    return std::any_of(manifest.files.begin(), manifest.files.end(),
                       [&](const StoreFileEntry& e) { return e.file == file; });
  } catch (...) {
    return false;
  }
}

void make_directories(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  QF_CHECK(!error, dir + ":", "cannot create directory:", error.message());
}

}  // namespace

// ---- construction ------------------------------------------------------------------------------

std::string RankStore::rank_dir(const std::string& work_dir, int rank) {
  QF_CHECK(rank >= 0, "rank", rank, "is negative");
  QF_CHECK(!work_dir.empty(), "empty work directory");
  return work_dir + "/rank-" + std::to_string(rank);
}

int RankStore::n_committed(const std::string& work_dir, int rank) {
  const std::string dir = rank_dir(work_dir, rank);
  if (!path_exists(dir + "/" + kManifestName)) return -1;
  return static_cast<int>(read_manifest(dir, rank).files.size());
}

std::vector<std::string> RankStore::compare_provenance(const nlohmann::json& a,
                                                       const nlohmann::json& b) {
  return provenance_differences(a, b);
}

RankStore RankStore::create(const std::string& work_dir, int rank, int world_size,
                            const nlohmann::json& provenance, StoreVerify verify) {
  QF_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "rank", rank, "is outside world size",
           world_size);
  QF_CHECK(provenance.is_object(), "rank-store provenance must be a JSON object");
  const std::string dir = rank_dir(work_dir, rank);
  const bool work_dir_existed = path_exists(work_dir);
  const bool dir_existed = path_exists(dir);
  make_directories(dir);
  // Make new directory entries durable (a crash must not lose a store that reported success).
  if (!work_dir_existed) fsync_parent_dir(work_dir);
  if (!dir_existed) fsync_parent_dir(dir);
  FileLock lock =
      FileLock::acquire(dir + "/" + kLockName, "rank store " + dir,
                        "two runs must not share a work directory", lock_wait_seconds());

  const std::string manifest_path = dir + "/" + kManifestName;
  StoreManifest manifest;
  bool resumed = path_exists(manifest_path);
  bool replaced = false;  // an existing manifest without committed layers, started afresh
  if (resumed) {
    manifest = read_manifest(dir, rank);
    if (manifest.files.empty() && (manifest.world_size != world_size ||
                                   !compare_provenance(manifest.provenance, provenance).empty())) {
      log_warn(dir,
               ": holds no committed layer (a run that stopped before its first commit); "
               "starting it afresh for this run");
      resumed = false;
      replaced = true;
      manifest = StoreManifest{};
    }
  }
  if (resumed) {
    std::vector<std::string> differences;
    if (manifest.world_size != world_size) {
      differences.push_back("world_size: " + std::to_string(manifest.world_size) + " vs " +
                            std::to_string(world_size));
    }
    for (std::string& line : compare_provenance(manifest.provenance, provenance)) {
      differences.push_back(std::move(line));
    }
    QF_CHECK(differences.empty(), dir + ":",
             "the existing rank store was written by a different run, and resume never mixes "
             "runs;",
             differences.size(),
             "difference(s), stored vs this run:" + join_lines(differences) +
                 "\nUse another work directory, or delete " + dir +
                 " to redo this rank from the start.");
  } else {
    // (stray layer files of a replaced store are unlisted ones, removed below)
    const auto names = replaced ? std::vector<std::string>{} : regular_file_names(dir);
    for (const std::string& name : names) {
      int layer = 0;
      std::string stage;
      QF_CHECK(!parse_layer_file_name(name, &layer, &stage), dir + ":", "holds", name,
               "but no manifest.json: not a rank store, or a damaged one; delete it or use "
               "another work directory");
    }
    manifest.rank = rank;
    manifest.world_size = world_size;
    manifest.created = utc_timestamp_now();
    manifest.provenance = provenance;
  }
  handle_stray_files(dir, manifest, /*remove=*/true);
  const std::vector<std::string> problems = check_committed_files(dir, manifest, verify);
  QF_CHECK(problems.empty(), dir + ":", problems.size(),
           "committed file(s) failed verification:" + join_lines(problems) +
               "\nThe store cannot be resumed; delete " + dir + " to redo this rank.");

  RankStore store(dir, std::move(manifest), std::move(lock));
  if (!resumed) store.write_manifest();  // (replaces the manifest of an empty store)
  log_debug(dir, resumed ? ": resumed, " : ": created, ", store.files().size(),
            " committed layer file(s)");
  return store;
}

std::string RankStore::lock_path(const std::string& work_dir, int rank) {
  return rank_dir(work_dir, rank) + "/" + kLockName;
}

StoreInspection RankStore::inspect(const std::string& work_dir, int rank, StoreVerify verify) {
  StoreInspection found;
  found.dir = rank_dir(work_dir, rank);
  found.exists = path_exists(found.dir + "/" + kManifestName);
  if (!found.exists) return found;
  try {
    found.manifest = read_manifest(found.dir, rank);
  } catch (const Error& e) {
    found.error = e.message();
    return found;
  }
  found.problems = check_committed_files(found.dir, found.manifest, verify);
  try {
    for (const std::string& name : regular_file_names(found.dir)) {
      int layer = 0;
      std::string stage;
      if (is_temp_name(name)) {
        found.temp_files.push_back(name);
      } else if (parse_layer_file_name(name, &layer, &stage) && !is_listed(found.manifest, name)) {
        found.unlisted_files.push_back(name);
      }
    }
  } catch (const Error& e) {
    found.problems.push_back(e.message());
  }
  return found;
}

RankStore RankStore::open(const std::string& work_dir, int rank, StoreVerify verify) {
  const std::string dir = rank_dir(work_dir, rank);
  QF_CHECK(path_exists(dir), dir + ":", "no rank store for rank", rank, "(directory missing)");
  QF_CHECK(path_exists(dir + "/" + kManifestName), dir + ":",
           "not a rank store (manifest.json missing)");
  StoreManifest manifest = read_manifest(dir, rank);
  handle_stray_files(dir, manifest, /*remove=*/false);
  const std::vector<std::string> problems = check_committed_files(dir, manifest, verify);
  QF_CHECK(problems.empty(), dir + ":", problems.size(),
           "committed file(s) failed verification:" + join_lines(problems));
  return RankStore(dir, std::move(manifest), FileLock());
}

// ---- commits -----------------------------------------------------------------------------------

void RankStore::commit_layer(const LayerRecord& record, const std::string& stage) {
  QF_CHECK(writable(), dir_ + ":", "opened read-only; only a store from RankStore::create commits");
  const std::string name = layer_file_name(record.layer, stage);
  QF_CHECK(!has_layer(record.layer, stage), dir_ + ":", "layer", record.layer, "stage", stage,
           "is already committed (" + name + ")");
  const std::string final_path = dir_ + "/" + name;
  const std::string temp_path = temp_path_for(final_path);
  StoreFileEntry entry{stage, record.layer, name, 0, 0};
  try {
    write_layer_file(temp_path, record, stage, rank());
    FileDescriptor fd = open_for_read(temp_path);
    start_writeback(fd, 0, 0);  // the disk writes while we read the file back for its checksum
    const FileChecksum sum = checksum_file(fd);
    fsync_file(fd);
    fd.close();
    entry.n_bytes = sum.n_bytes;
    entry.checksum = sum.digest;
    rename_file(temp_path, final_path);
  } catch (...) {
    remove_file_noexcept(temp_path);
    throw;
  }
  fsync_parent_dir(final_path);

  manifest_.files.push_back(entry);
  std::sort(manifest_.files.begin(), manifest_.files.end(),
            [](const StoreFileEntry& x, const StoreFileEntry& y) {
              return std::tie(x.stage, x.layer) < std::tie(y.stage, y.layer);
            });
  try {
    write_manifest();
  } catch (...) {
    // A manifest that did not reach the disk (ENOSPC, EIO before its rename) leaves the old one,
    // which does not list the file: remove it so nothing unlisted stays behind. If the new
    // manifest did land (a failure after its rename), the file is committed and stays.
    if (!manifest_on_disk_lists(dir_, rank(), name)) remove_file_noexcept(final_path);
    manifest_.files.erase(std::find_if(
        manifest_.files.begin(), manifest_.files.end(),
        [&](const StoreFileEntry& e) { return e.stage == stage && e.layer == record.layer; }));
    throw;
  }
  log_debug(final_path, ": committed, ", entry.n_bytes, " bytes, xxh64 ",
            checksum_hex(entry.checksum));
}

std::string RankStore::provenance_xxh64() const {
  const std::string text = manifest_.provenance.dump();
  return checksum_hex(checksum64(text.data(), text.size()));
}

void RankStore::set_source_identity(const nlohmann::json& source) {
  QF_CHECK(writable(), dir_ + ":", "opened read-only; cannot record the source identity");
  manifest_.source = source;
  write_manifest();
}

void RankStore::note_source_digests(const std::map<std::string, std::string>& digests) {
  std::lock_guard<std::mutex> lock(noted_->mutex);
  for (const auto& [file, digest] : digests) noted_->digests[file] = digest;
}

void RankStore::flush_source_digests() {
  {
    std::lock_guard<std::mutex> lock(noted_->mutex);
    if (noted_->digests.empty()) return;
  }
  write_manifest();
}

void RankStore::merge_noted_digests() {
  std::map<std::string, std::string> digests;
  {
    std::lock_guard<std::mutex> lock(noted_->mutex);
    digests.swap(noted_->digests);
  }
  if (digests.empty() || !manifest_.source.is_object() || !manifest_.source.contains("files")) {
    return;
  }
  for (auto& entry : manifest_.source["files"]) {
    const auto it = digests.find(entry.value("name", std::string()));
    if (it != digests.end()) set_source_digest_json(entry, it->second);
  }
}

void RankStore::write_manifest() {
  merge_noted_digests();
  manifest_.updated = utc_timestamp_now();
  write_file_atomic(dir_ + "/" + kManifestName, manifest_to_text(manifest_));
}

// ---- queries and reads -------------------------------------------------------------------------

const StoreFileEntry* RankStore::find(int layer, const std::string& stage) const {
  for (const StoreFileEntry& entry : manifest_.files) {
    if (entry.layer == layer && entry.stage == stage) return &entry;
  }
  return nullptr;
}

bool RankStore::has_layer(int layer, const std::string& stage) const {
  return find(layer, stage) != nullptr;
}

std::vector<int> RankStore::committed_layers(const std::string& stage) const {
  std::vector<int> layers;
  for (const StoreFileEntry& entry : manifest_.files) {
    if (entry.stage == stage) layers.push_back(entry.layer);
  }
  std::sort(layers.begin(), layers.end());
  return layers;
}

LayerRecord RankStore::read_layer(int layer, const std::string& stage) const {
  const StoreFileEntry* entry = find(layer, stage);
  QF_CHECK(entry != nullptr, dir_ + ":", "layer", layer, "stage", stage,
           "is not committed in this rank store");
  const std::string path = path_of(*entry);
  const std::string problem = check_committed_file(path, *entry, StoreVerify::kChecksums);
  QF_CHECK(problem.empty(), problem);
  LayerFileHeader header;
  LayerRecord record = read_layer_file(path, &header);
  QF_CHECK(header.layer == layer && header.stage == stage && header.rank == rank(), path + ":",
           "holds layer", header.layer, "stage", header.stage, "of rank", header.rank,
           "but manifest.json lists it as layer", layer, "stage", stage, "of rank", rank());
  return record;
}

std::vector<std::string> RankStore::verify_files() const {
  return check_committed_files(dir_, manifest_, StoreVerify::kChecksums);
}

}  // namespace qf::formats
