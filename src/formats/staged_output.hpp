// The output-directory protocol of every job that writes a checkpoint: all files are written
// into a staging directory, and only a complete, fsynced result is moved to `<out>`.
// Owns: the refusal of non-empty outputs, the lock that makes one live run own an output, the
// staging dir and its marker, the final move. Does not own what goes into the files, nor who
// writes them (ranks agree on that before calling commit).
#pragma once
#include <string>
#include <vector>

#include "formats/file_lock.hpp"
#include "formats/path_overlap.hpp"
#include "formats/posix_file.hpp"
#include "formats/safetensors_writer.hpp"

namespace qf::formats {

// Staging layout (STAGING below):
//   OUT.partial/              beside OUT, renamed to OUT at the end (the usual case)
//   OUT/.quantforge.partial/  inside OUT when OUT is a mount point (a rename cannot replace it);
//                             its entries are renamed into OUT at the end
//   STAGING.lock              flock()ed by the one live process (rank 0) owning this output;
//                             names it (pid, host, since) so a second run can say who it is
//   STAGING.marker            beside STAGING: this directory was made by quantforge for OUT (a
//                             stale one is removed by the next run; a directory without a
//                             marker is never deleted). Written before STAGING is created,
//                             removed after the final move (or first, when the move fails, to
//                             keep the complete result). Never inside STAGING, so a crash
//                             anywhere leaves either OUT complete or a staging the next run
//                             redoes.
class StagedOutput {
 public:
  // Checks that `final_dir` does not exist or is an empty directory (else qf::Error: "output
  // directory not empty", naming it), and that the directory the staging goes into exists and
  // is writable. Creates nothing.
  static void check_final_dir(const std::string& final_dir);
  // STAGING for `final_dir` (a pure function of the path and whether OUT is a mount point).
  static std::string staging_dir_for(const std::string& final_dir);

  // Every path a staged write of `final_dir` creates or replaces: OUT, STAGING, STAGING.lock
  // (for the path-overlap checks jobs make before they start).
  static std::vector<NamedPath> written_paths(const std::string& final_dir);

  // Rank 0, at the start of a job (before its long phases, so that a second run on the same
  // output fails at once): check_final_dir, then takes STAGING.lock (a live owner is an error
  // naming it; a same-host owner that is exiting is waited for). Held until commit() or
  // discard(), or the destructor (which discards: a job that stops early leaves no lock file).
  static StagedOutput claim(const std::string& final_dir);
  // For a rebuild in place of an existing, complete `final_dir` (quantize --export-only --shard):
  // takes STAGING.lock the same way, so that no other run writes OUT meanwhile. Creates no
  // staging; only release() (or the destructor) may follow.
  static StagedOutput claim_existing(const std::string& final_dir);

  StagedOutput(StagedOutput&& other) noexcept = default;
  StagedOutput& operator=(StagedOutput&&) = delete;
  ~StagedOutput();

  // Creates a fresh STAGING. A stale one with the marker (a crashed run) is removed with a
  // warning; one without it (not made by quantforge, e.g. someone's --work) is refused.
  void create_staging();
  // fsyncs STAGING, moves it to OUT (rename, or entry by entry into a mount point), fsyncs OUT
  // and its parent, removes the marker and the lock file. If the move fails the
  // complete result stays in STAGING and the qf::Error says how to finish by hand.
  void commit();
  // Removes STAGING and everything in it after a failure (logs errors) if this object created
  // it, unless commit() found it complete (then it is kept and named); releases the lock.
  void discard() noexcept;
  // Releases the lock and removes its file (claim_existing's end).
  void release() noexcept { lock_.release_and_remove(); }

  const std::string& final_dir() const { return final_dir_; }
  const std::string& staging_dir() const { return staging_dir_; }

 private:
  StagedOutput(std::string final_dir, FileLock lock);
  std::string final_dir_, staging_dir_;
  FileLock lock_;
  bool created_ = false;   // create_staging() made STAGING: only then may discard() remove it
  bool complete_ = false;  // commit() got past the fsync: never delete STAGING after that
};

// Creates `path` with the safetensors header of `layout` written and the data region sized
// (zero-filled by ftruncate), so that several ranks can pwrite their tensors at the layout's
// offsets. Call on one rank.
void create_presized_shard(const std::string& path, const SafetensorsLayout& layout);
// Opens an existing file for pwrite (no O_CREAT, no O_TRUNC); errors name the file.
FileDescriptor open_for_pwrite(const std::string& path);

// Recursively copies a regular file, creating parent directories under `to_dir`, then fsyncs.
void copy_file_into(const std::string& from_path, const std::string& to_dir,
                    const std::string& relative_path);

}  // namespace qf::formats
