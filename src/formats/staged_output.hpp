// The output-directory protocol of every job that writes a checkpoint: all files are written
// into `<out>.partial/`, and only a complete, fsynced result is renamed to `<out>`.
// Owns: the refusal of non-empty outputs, the staging dir, the final rename. Does not own
// what goes into the files, nor who writes them (ranks agree on that before calling commit).
#pragma once
#include <string>

#include "formats/posix_file.hpp"
#include "formats/safetensors_writer.hpp"

namespace qf::pipeline {

class StagedOutput {
 public:
  // Checks that `final_dir` does not exist or is an empty directory (else qf::Error: "output
  // directory not empty", naming it), and that its parent exists and is writable. Does not
  // create anything.
  static void check_final_dir(const std::string& final_dir);

  // The staging directory for `final_dir`: `<final_dir>.partial`.
  static std::string staging_dir_for(const std::string& final_dir);

  // Creates a fresh staging directory (removing a stale one left by a crashed run, with a
  // warning). Call on one rank only.
  static void create_staging(const std::string& final_dir);

  // fsyncs the staging dir, renames it to `final_dir` (replacing an empty dir) and fsyncs the
  // parent. Call on one rank only, after every rank has fsynced its files.
  static void commit(const std::string& final_dir);

  // Removes the staging directory and everything in it (cleanup after a failure; logs errors).
  static void discard(const std::string& final_dir) noexcept;
};

// Creates `path` with the safetensors header of `layout` written and the data region sized
// (zero-filled by ftruncate), so that several ranks can pwrite their tensors at the layout's
// offsets. Call on one rank.
void create_presized_shard(const std::string& path, const formats::SafetensorsLayout& layout);
// Opens an existing file for pwrite (no O_CREAT, no O_TRUNC); errors name the file.
formats::FileDescriptor open_for_pwrite(const std::string& path);

// Recursively copies a regular file, creating parent directories under `to_dir`, then fsyncs.
void copy_file_into(const std::string& from_path, const std::string& to_dir,
                    const std::string& relative_path);

}  // namespace qf::pipeline
