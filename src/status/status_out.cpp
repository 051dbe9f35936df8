// add_out_status: does OUT exist, is an export staging or locked, do its files match
// quantforge_checksums.json (read-only; see run_status.hpp).
#include <filesystem>

#include "formats/atomic_file.hpp"
#include "formats/checksum.hpp"
#include "formats/shard_digest.hpp"
#include "formats/staged_output.hpp"
#include "status/run_status.hpp"

namespace qf::pipeline {

namespace fs = std::filesystem;

void add_out_status(RunStatus& status, const StatusOptions& options) {
  OutStatus& out = status.out;
  out.dir = !options.out_dir.empty() ? options.out_dir
            : status.job.is_object() ? status.job.value("out", std::string())
                                     : std::string();
  if (out.dir.empty()) return;
  std::error_code error;
  const std::string staging = formats::StagedOutput::staging_dir_for(out.dir);
  out.staging_exists = fs::exists(staging, error);
  out.lock = formats::probe_lock(staging + ".lock");
  out.exists = fs::is_directory(out.dir, error) && !fs::is_empty(out.dir, error);
  if (!out.exists) return;
  const std::string sums_path = out.dir + "/" + formats::kChecksumsFileName;
  if (!fs::exists(sums_path, error)) {
    out.problems.push_back(std::string(formats::kChecksumsFileName) +
                           " absent: not a finished quantforge export");
    return;
  }
  out.has_checksums = true;
  formats::ChecksumsManifest sums;
  try {
    sums = formats::parse_checksums_manifest(formats::read_json_file(sums_path), sums_path);
  } catch (const std::exception& e) {
    out.problems.push_back(e.what());
    return;
  }
  for (const auto& problem : sums.problems) out.problems.push_back(sums_path + ": " + problem);
  if (!options.verify_out) return;
  for (const auto& [file, expected] : sums.files) {
    try {
      const uint64_t digest = formats::manifest_digest_of_file(sums, out.dir + "/" + file);
      ++out.n_files_checked;
      if (digest != expected) {
        out.problems.push_back(file + ": checksum " + formats::checksum_hex(digest) +
                               " != " + formats::checksum_hex(expected));
      }
    } catch (const std::exception& e) {
      out.problems.push_back(file + ": " + e.what());
    }
  }
}

}  // namespace qf::pipeline
