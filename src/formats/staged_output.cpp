// Staging directory life cycle (see staged_output.hpp).
#include "formats/staged_output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/check.hpp"
#include "core/log.hpp"
#include "formats/posix_file.hpp"

namespace qf::formats {
namespace fs = std::filesystem;

namespace {

// STAGING.marker beside STAGING (staged_output.hpp); kLegacyMarkerName inside STAGING is how
// runs before 2026-12 marked it (still recognised as stale staging).
constexpr const char* kMarkerSuffix = ".marker";
constexpr const char* kLegacyMarkerName = ".quantforge-staging";
constexpr const char* kInsideName = ".quantforge.partial";

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  QF_SYS_CHECK(fd, "cannot open directory", dir, "to fsync it");
  FileDescriptor owner(fd, dir);
  fsync_file(owner);
}

std::string trimmed(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

// /proc/self/mountinfo escapes blanks and backslashes in mount points as \ooo.
std::string unescape_mount_path(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      out += static_cast<char>(std::stoi(text.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += text[i];
    }
  }
  return out;
}

// Whether an existing directory is a mount point (a rename can neither replace nor remove it):
// listed in /proc/self/mountinfo (bind mounts too), or on another device than its parent.
bool is_mount_point(const std::string& dir) {
  std::error_code ec;
  const fs::path real = fs::canonical(dir, ec);
  if (ec) return false;
  std::ifstream info("/proc/self/mountinfo");
  std::string line;
  while (std::getline(info, line)) {
    std::istringstream fields(line);
    std::string id, parent, devs, root, mount_point;
    if (fields >> id >> parent >> devs >> root >> mount_point &&
        unescape_mount_path(mount_point) == real.string()) {
      return true;
    }
  }
  struct stat self {
  }, up{};
  return ::stat(real.c_str(), &self) == 0 && ::stat(real.parent_path().c_str(), &up) == 0 &&
         self.st_dev != up.st_dev;
}

bool inside_layout(const std::string& final_dir) {
  std::error_code ec;
  return fs::is_directory(final_dir, ec) && is_mount_point(final_dir);
}

// A mount-point OUT holds its own staging (STAGING, STAGING.lock, STAGING.marker: this run's,
// or a crashed run's that create_staging handles): empty means nothing else is in it.
bool empty_but_for_staging(const std::string& final_dir) {
  const std::string inside = kInsideName;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(final_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name != inside && name != inside + ".lock" && name != inside + kMarkerSuffix) return false;
  }
  return !ec;
}

}  // namespace

void StagedOutput::check_final_dir(const std::string& final_dir) {
  QF_CHECK(!final_dir.empty(), "the output directory name is empty");
  std::error_code ec;
  const fs::path path(final_dir);
  if (fs::exists(path, ec)) {
    QF_CHECK(fs::is_directory(path, ec), "output", final_dir, "exists and is not a directory");
    const bool mount_point = inside_layout(final_dir);
    QF_CHECK(mount_point ? empty_but_for_staging(final_dir) : fs::is_empty(path, ec),
             "output directory", final_dir, "is not empty; choose a new name or remove it first");
    if (mount_point) {
      QF_CHECK(::access(final_dir.c_str(), W_OK) == 0, "output directory", final_dir,
               "is a mount point and not writable");
      return;
    }
  }
  fs::path parent = fs::absolute(path, ec).parent_path();
  QF_CHECK(fs::is_directory(parent, ec), "the parent directory of output", final_dir, "(",
           parent.string(), ") does not exist");
  QF_CHECK(::access(parent.c_str(), W_OK) == 0, "the parent directory of output", final_dir, "(",
           parent.string(), ") is not writable");
}

std::string StagedOutput::staging_dir_for(const std::string& final_dir) {
  const std::string dir = trimmed(final_dir);
  return inside_layout(dir) ? dir + "/" + kInsideName : dir + ".partial";
}

StagedOutput::StagedOutput(std::string final_dir, FileLock lock)
    : final_dir_(std::move(final_dir)),
      staging_dir_(staging_dir_for(final_dir_)),
      lock_(std::move(lock)) {}

std::vector<NamedPath> StagedOutput::written_paths(const std::string& final_dir) {
  const std::string staging = staging_dir_for(final_dir);
  return {{"--out", final_dir},
          {"the staging directory", staging},
          {"the output lock file", staging + ".lock"},
          {"the staging marker", staging + kMarkerSuffix}};
}

StagedOutput StagedOutput::claim(const std::string& final_dir) {
  check_final_dir(final_dir);
  const std::string staging = staging_dir_for(final_dir);
  FileLock lock =
      FileLock::acquire(staging + ".lock", "output " + trimmed(final_dir),
                        "two runs must not write one output directory", lock_wait_seconds());
  StagedOutput out(trimmed(final_dir), std::move(lock));
  check_final_dir(final_dir);  // again: the holder we may have waited for may have finished it
  return out;
}

StagedOutput StagedOutput::claim_existing(const std::string& final_dir) {
  std::error_code ec;
  QF_CHECK(fs::is_directory(final_dir, ec), "output", final_dir, "is not an existing directory");
  FileLock lock =
      FileLock::acquire(staging_dir_for(final_dir) + ".lock", "output " + trimmed(final_dir),
                        "two runs must not write one output directory", lock_wait_seconds());
  return StagedOutput(trimmed(final_dir), std::move(lock));
}

StagedOutput::~StagedOutput() {
  if (lock_.held()) discard();
}

void StagedOutput::create_staging() {
  std::error_code ec;
  const std::string marker = staging_dir_ + kMarkerSuffix;
  if (fs::exists(staging_dir_, ec)) {
    QF_CHECK(fs::exists(marker, ec) || fs::exists(staging_dir_ + "/" + kLegacyMarkerName, ec),
             staging_dir_, "exists but was not made by a quantforge run for", final_dir_, "(no",
             marker, "marker): it may hold someone's data or a complete export whose final",
             "move failed; move or remove it yourself");
    log_warn("removing ", staging_dir_, " left behind by an earlier, unfinished run");
    fs::remove_all(staging_dir_, ec);
    QF_CHECK(!ec, "cannot remove stale staging directory", staging_dir_, ":", ec.message());
  }
  // The marker first: a crash between the two leaves a marker without a directory (harmless),
  // never a directory without its marker (which no later run would dare to remove).
  const std::string marker_text = "staging of " + final_dir_ + "\n";
  FileDescriptor marker_fd = open_for_write(marker);
  pwrite_full(marker_fd, marker_text.data(), marker_text.size(), 0);
  marker_fd.close();
  fs::create_directories(staging_dir_, ec);
  QF_CHECK(!ec, "cannot create staging directory", staging_dir_, ":", ec.message());
  created_ = true;
}

void StagedOutput::commit() {
  // The marker (beside STAGING, so it never moves into OUT) stays until OUT is in place: a crash
  // before that leaves stale staging that the next run removes and redoes. When the move fails,
  // the marker goes first, so that the complete result it leaves in STAGING is never removed.
  const std::string marker = staging_dir_ + kMarkerSuffix;
  fsync_dir(staging_dir_);
  complete_ = true;
  const std::string finish_by_hand =
      "the complete result is in " + staging_dir_ + "; move it into place yourself";
  std::error_code ec;
  auto keep_staging_unless = [&](bool ok) {
    if (!ok) remove_file_noexcept(marker);
    return ok;
  };
  if (staging_dir_ == final_dir_ + "/" + kInsideName) {
    // OUT is a mount point: move every entry up one level, then drop the empty staging dir.
    for (const auto& entry : fs::directory_iterator(staging_dir_, ec)) {
      const fs::path to = fs::path(final_dir_) / entry.path().filename();
      fs::rename(entry.path(), to, ec);
      QF_CHECK(keep_staging_unless(!ec), "cannot move", entry.path().string(), "to", to.string(),
               ":", ec.message(), ";", finish_by_hand);
    }
    QF_CHECK(keep_staging_unless(!ec), "cannot list", staging_dir_, ":", ec.message(), ";",
             finish_by_hand);
    fs::remove(staging_dir_, ec);
    QF_CHECK(!ec, "cannot remove", staging_dir_, ":", ec.message());
    fsync_dir(final_dir_);
  } else {
    if (fs::exists(final_dir_, ec)) {
      QF_CHECK(
          keep_staging_unless(fs::is_directory(final_dir_, ec) && fs::is_empty(final_dir_, ec)),
          "output directory", final_dir_, "appeared and is not empty while the job ran;",
          finish_by_hand);
      fs::remove(final_dir_, ec);
      QF_CHECK(keep_staging_unless(!ec), "cannot replace empty output directory", final_dir_, ":",
               ec.message(), ";", finish_by_hand);
    }
    fs::rename(staging_dir_, final_dir_, ec);
    QF_CHECK(keep_staging_unless(!ec), "cannot rename", staging_dir_, "to", final_dir_, ":",
             ec.message(), ";", finish_by_hand + " (mv " + staging_dir_ + " " + final_dir_ + ")");
    fsync_parent_dir(final_dir_);
  }
  remove_file_noexcept(marker);
  lock_.release_and_remove();
}

void StagedOutput::discard() noexcept {
  if (complete_) {
    log_error("keeping ", staging_dir_, ": it holds the complete result; move it to ", final_dir_);
    lock_.release_and_remove();
    return;
  }
  if (created_) {
    std::error_code ec;
    fs::remove_all(staging_dir_, ec);
    if (ec) log_error("cannot remove ", staging_dir_, ": ", ec.message());
    if (!ec) remove_file_noexcept(staging_dir_ + kMarkerSuffix);
  }
  lock_.release_and_remove();
}

void create_presized_shard(const std::string& path, const SafetensorsLayout& layout) {
  auto fd = open_for_write(path);
  pwrite_full(fd, layout.header_bytes.data(), layout.header_bytes.size(), 0);
  QF_SYS_CHECK(::ftruncate(fd.get(), static_cast<off_t>(layout.file_size)),
               "cannot size output shard", path, "to", layout.file_size, "bytes");
  fd.close();
}

FileDescriptor open_for_pwrite(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  QF_SYS_CHECK(fd, "cannot open output shard", path, "for writing");
  return FileDescriptor(fd, path);
}

void copy_file_into(const std::string& from_path, const std::string& to_dir,
                    const std::string& relative_path) {
  const fs::path target = fs::path(to_dir) / relative_path;
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  QF_CHECK(!ec, "cannot create directory", target.parent_path().string(), ":", ec.message());
  fs::copy_file(from_path, target, fs::copy_options::overwrite_existing, ec);
  QF_CHECK(!ec, "cannot copy", from_path, "to", target.string(), ":", ec.message());
  const int fd = ::open(target.c_str(), O_RDONLY);
  QF_SYS_CHECK(fd, "cannot open", target.string(), "to fsync it");
  FileDescriptor owner(fd, target.string());
  fsync_file(owner);
}

}  // namespace qf::formats
