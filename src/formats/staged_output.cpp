// Staging directory life cycle (see staged_output.hpp).
#include "formats/staged_output.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include "core/check.hpp"
#include "core/log.hpp"
#include "formats/posix_file.hpp"

namespace qf::pipeline {
namespace fs = std::filesystem;

namespace {
void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  QF_SYS_CHECK(fd, "cannot open directory", dir, "to fsync it");
  formats::FileDescriptor owner(fd, dir);
  formats::fsync_file(owner);
}
}  // namespace

void StagedOutput::check_final_dir(const std::string& final_dir) {
  QF_CHECK(!final_dir.empty(), "the output directory name is empty");
  std::error_code ec;
  const fs::path path(final_dir);
  if (fs::exists(path, ec)) {
    QF_CHECK(fs::is_directory(path, ec), "output", final_dir, "exists and is not a directory");
    QF_CHECK(fs::is_empty(path, ec), "output directory", final_dir,
             "is not empty; choose a new name or remove it first");
  }
  fs::path parent = fs::absolute(path, ec).parent_path();
  QF_CHECK(fs::is_directory(parent, ec), "the parent directory of output", final_dir, "(",
           parent.string(), ") does not exist");
  QF_CHECK(::access(parent.c_str(), W_OK) == 0, "the parent directory of output", final_dir, "(",
           parent.string(), ") is not writable");
}

std::string StagedOutput::staging_dir_for(const std::string& final_dir) {
  std::string dir = final_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir + ".partial";
}

void StagedOutput::create_staging(const std::string& final_dir) {
  const std::string staging = staging_dir_for(final_dir);
  std::error_code ec;
  if (fs::exists(staging, ec)) {
    log_warn("removing ", staging, " left behind by an earlier, unfinished run");
    fs::remove_all(staging, ec);
    QF_CHECK(!ec, "cannot remove stale staging directory", staging, ":", ec.message());
  }
  fs::create_directories(staging, ec);
  QF_CHECK(!ec, "cannot create staging directory", staging, ":", ec.message());
}

void StagedOutput::commit(const std::string& final_dir) {
  const std::string staging = staging_dir_for(final_dir);
  fsync_dir(staging);
  std::error_code ec;
  if (fs::exists(final_dir, ec)) {
    QF_CHECK(fs::is_directory(final_dir, ec) && fs::is_empty(final_dir, ec), "output directory",
             final_dir, "appeared and is not empty while the job ran; the result stays in",
             staging);
    fs::remove(final_dir, ec);
    QF_CHECK(!ec, "cannot replace empty output directory", final_dir, ":", ec.message());
  }
  formats::rename_file(staging, final_dir);
  formats::fsync_parent_dir(final_dir);
}

void StagedOutput::discard(const std::string& final_dir) noexcept {
  std::error_code ec;
  fs::remove_all(staging_dir_for(final_dir), ec);
  if (ec) log_error("cannot remove ", staging_dir_for(final_dir), ": ", ec.message());
}

void create_presized_shard(const std::string& path, const formats::SafetensorsLayout& layout) {
  auto fd = formats::open_for_write(path);
  formats::pwrite_full(fd, layout.header_bytes.data(), layout.header_bytes.size(), 0);
  QF_SYS_CHECK(::ftruncate(fd.get(), static_cast<off_t>(layout.file_size)),
               "cannot size output shard", path, "to", layout.file_size, "bytes");
  fd.close();
}

formats::FileDescriptor open_for_pwrite(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  QF_SYS_CHECK(fd, "cannot open output shard", path, "for writing");
  return formats::FileDescriptor(fd, path);
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
  formats::FileDescriptor owner(fd, target.string());
  formats::fsync_file(owner);
}

}  // namespace qf::pipeline
