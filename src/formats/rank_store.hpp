// RankStore: one rank's crash-safe checkpoint directory, WORK/rank-R/ (layer files + manifest).
// Owns: the commit protocol, verification, resume checks. Does not own: what a layer holds
// (pipeline), the HDF5 mapping (layer_file), the manifest text (rank_store_manifest).
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/file_lock.hpp"
#include "formats/layer_record.hpp"
#include "formats/posix_file.hpp"
#include "formats/rank_store_manifest.hpp"

namespace qf::formats {

// ================================ on-disk layout, format version 2 ==============================
//
// WORK/rank-R/                      one directory per rank R (no zero padding: rank-0, rank-12)
//   manifest.json                   the commit record (below); written atomically after each commit
//   layer-LLLL.<stage>.h5           one committed (layer, stage); LLLL = layer, %04d
//   writer.lock                     flock()ed by the one process writing this store; names it
//                                   (pid, host, since) for a refused second run
//   *.tmp.<pid>                     a write in progress (or killed): never part of the store
//
// Stages are lower-case identifiers; the pipeline uses "calib" (calibration results of a layer:
// input amax per linear, token counts per expert) and "quant" (quantized tensors), committed
// separately, so a layer's calibration survives a crash during its quantization.
//
// Commit protocol (commit_layer): write layer-LLLL.<stage>.h5.tmp.<pid> with HDF5, close it,
// checksum and fsync it, rename it to layer-LLLL.<stage>.h5, fsync the directory, then add it to
// manifest.json (write manifest.json.tmp.<pid>, fsync, rename, fsync the directory). A layer is
// committed exactly when manifest.json lists it. kill -9 at any moment leaves every committed
// layer intact and loses at most the layer being committed; a resume (create) deletes temp files
// and layer files the manifest does not list.
//
// manifest.json (object; keys sorted):
//   format          "quantforge.rank_store"
//   format_version  2 (1: the same without "source"; still read)
//   checksum        "xxh64": the algorithm of every checksum here (XXH64, seed 0, as hex)
//   rank, world_size  of the run that wrote the store
//   created, updated  UTC ISO 8601 times (not part of the provenance comparison)
//   provenance      object supplied by the pipeline (tool version, options, config hash, source
//                   files with sizes and checksums, ...); resume refuses any difference
//   files           [{stage, layer, file, n_bytes, xxh64}] sorted by (stage, layer): n_bytes and
//                   xxh64 cover the whole layer file
//   source          (format_version 2) the source checkpoint's files as this store's run found
//                   them: {"files": [{name, n_bytes, mtime_ns, ctime_ns, inode[, xxh64]}]}
//                   (formats/source_identity.hpp); xxh64 of the whole file once hashed
//   manifest_xxh64  XXH64 of the compact JSON dump (sorted keys) of this object minus this key
//
// Layer file (HDF5 1.8 object format, readable by HDF5 >= 1.8 and h5py; no timestamps, so equal
// records give equal bytes; links listed in creation order):
//   /  attributes   format = "quantforge.rank_store.layer" (string), format_version = 1, or 2
//                   when a tensor is derived (int64), layer (int64), stage (string), rank (int64)
//   /tensors/<name> uint8[n_bytes]: the tensor's raw bytes, exactly its safetensors data bytes
//                   (little-endian elements; F4 packs two codes per byte), in record order;
//                   uint8[0] for a derived tensor (version 2: its bytes are in the source)
//       @dtype      string: safetensors dtype ("U8", "F8_E4M3", "F32", "BF16", "F4", ...)
//       @shape      int64[ndim], logical elements; a null dataspace for a 0-d tensor
//       @derived_from   (derived only) string: the source tensor whose bytes give this one
//       @derivation     (derived only) "identity" | "fp4_negative_zero_cleared" (nibble 8 -> 0)
//       @derived_xxh64  (derived only) 16 hex digits: XXH64 of the tensor's bytes, checked when
//                       an export rebuilds them from the source (formats/source_derived.hpp)
//   /f32/<key>      float32 LE [n]   (e.g. "<linear>.input_amax")
//   /i64/<key>      int64 LE [n]     (e.g. "expert_tokens")
//   /attrs          group whose attributes are the record's strings (fixed-length UTF-8,
//                   NUL-padded; "" stored as one NUL)
// Names and keys are any UTF-8 except "", "." and strings containing '/' or NUL.
// ================================================================================================

constexpr const char* kStageCalib = "calib";
constexpr const char* kStageQuant = "quant";

// How much open/create verify of the committed files: sizes only (cheap resume), or sizes and
// checksums (reads every file; what `validate` and export use).
enum class StoreVerify { kSizes, kChecksums };

// What a read-only look at one rank's store finds (`quantforge status`): the same manifest
// parsing and committed-file checks as open()/create(), but nothing thrown for a damaged store,
// nothing logged, nothing changed, no lock taken.
struct StoreInspection {
  std::string dir;                          // WORK/rank-R
  bool exists = false;                      // dir/manifest.json is there
  std::string error;                        // manifest unreadable or invalid ("" if fine)
  StoreManifest manifest;                   // valid when exists && error.empty()
  std::vector<std::string> problems;        // committed files failing the check (one line each)
  std::vector<std::string> temp_files;      // *.tmp.* (a write in progress, or a killed one)
  std::vector<std::string> unlisted_files;  // layer files manifest.json does not list
};

// Not thread-safe (HDF5 is built without thread safety): use a store from one thread at a time
// (StoreCommitter commits on a background thread and serializes every call with it).
class RankStore {
 public:
  // The writer's entry point: creates WORK/rank-R (and WORK), or resumes the store there.
  // Resuming requires the stored world size and provenance to equal the given ones; otherwise a
  // qf::Error lists every difference ("options.samples: 128 vs 256", stored value first). A
  // store that holds no committed layer has nothing to mix: it is started afresh with the given
  // provenance (warning), so a run that stopped before its first commit never blocks the retry.
  // Takes writer.lock (an error if another live process holds it), deletes temp files and layer
  // files the manifest does not list (warning for each), verifies the committed files.
  static RankStore create(const std::string& work_dir, int rank, int world_size,
                          const nlohmann::json& provenance,
                          StoreVerify verify = StoreVerify::kChecksums);
  // Read-only access to any rank's store (export, validate). Changes nothing on disk: leftover
  // temp or unlisted files are only reported (warning), since their writer may still be running.
  // A missing manifest, a missing/truncated/corrupted listed file is an error naming the file.
  static RankStore open(const std::string& work_dir, int rank,
                        StoreVerify verify = StoreVerify::kChecksums);

  // Commits one (layer, stage) atomically (protocol above). Errors: read-only store, invalid
  // record or stage, (layer, stage) already committed.
  void commit_layer(const LayerRecord& record, const std::string& stage);
  bool has_layer(int layer, const std::string& stage) const;
  std::vector<int> committed_layers(const std::string& stage) const;  // ascending
  // Checks the file's size and checksum against the manifest, then reads it; an error names the
  // file on any mismatch (including a file holding another layer, stage or rank).
  LayerRecord read_layer(int layer, const std::string& stage) const;
  // Re-checks size and checksum of every committed file; one line per problem, empty if intact.
  std::vector<std::string> verify_files() const;

  const nlohmann::json& provenance() const { return manifest_.provenance; }
  // XXH64 hex of the provenance's compact JSON: which run a store belongs to, in one word (the
  // quantization report records it; --shard and validate --work compare it).
  std::string provenance_xxh64() const;
  // The source files' identity recorded with the store (formats/source_identity.hpp); null for
  // a store written before it existed (manifest version 1).
  const nlohmann::json& source_identity() const { return manifest_.source; }
  int64_t manifest_format_version() const { return manifest_.format_version; }
  // Records `source` (writable stores; rewrites manifest.json at once).
  void set_source_identity(const nlohmann::json& source);
  // Thread-safe: content digests ({file: xxh64 hex}) to merge into the recorded identity's files
  // at the next manifest write (the next commit, or set_source_identity / flush_source_digests).
  void note_source_digests(const std::map<std::string, std::string>& digests);
  // Writes the noted digests now (writable stores; none noted: nothing written).
  void flush_source_digests();
  const std::vector<StoreFileEntry>& files() const { return manifest_.files; }
  int rank() const { return manifest_.rank; }
  int world_size() const { return manifest_.world_size; }
  const std::string& dir() const { return dir_; }
  bool writable() const { return lock_.held(); }

  // See StoreInspection. Errors only for a bad rank number.
  static StoreInspection inspect(const std::string& work_dir, int rank,
                                 StoreVerify verify = StoreVerify::kSizes);

  // WORK/rank-R.
  static std::string rank_dir(const std::string& work_dir, int rank);
  // The number of committed layer files WORK/rank-R/manifest.json lists, -1 without a manifest.
  // Reads (and checks) the manifest only: takes no lock, verifies no file, changes nothing.
  static int n_committed(const std::string& work_dir, int rank);
  // WORK/rank-R/writer.lock (formats/file_lock.hpp).
  static std::string lock_path(const std::string& work_dir, int rank);
  // Human-readable differences, `a` (stored) first: see provenance_differences.
  static std::vector<std::string> compare_provenance(const nlohmann::json& a,
                                                     const nlohmann::json& b);

 private:
  RankStore(std::string dir, StoreManifest manifest, FileLock lock)
      : dir_(std::move(dir)),
        manifest_(std::move(manifest)),
        lock_(std::move(lock)),
        noted_(std::make_shared<NotedDigests>()) {}
  struct NotedDigests {
    std::mutex mutex;
    std::map<std::string, std::string> digests;
  };
  void merge_noted_digests();
  const StoreFileEntry* find(int layer, const std::string& stage) const;
  std::string path_of(const StoreFileEntry& entry) const { return dir_ + "/" + entry.file; }
  void write_manifest();

  std::string dir_;
  StoreManifest manifest_;
  FileLock lock_;                        // held in stores made by create()
  std::shared_ptr<NotedDigests> noted_;  // shared_ptr: the store stays movable
};

}  // namespace qf::formats
