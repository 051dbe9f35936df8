// Checked POSIX file primitives: every call's return value is checked, every error names the
// file. Owns: EINTR and short-transfer loops. Does not own: any file format.
#include "formats/posix_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "core/log.hpp"

namespace qf::formats {
namespace {
// One pread/pwrite call moves at most this much; Linux caps a transfer near 2 GiB anyway.
constexpr uint64_t kMaxTransferBytes = uint64_t{1} << 30;

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}
}  // namespace

// ---- FileDescriptor ----------------------------------------------------------------------------

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0 && ::close(fd_) != 0) {
    log_warn("close(", path_, ") failed: ", errno_text(errno));
  }
}

FileDescriptor::FileDescriptor(FileDescriptor&& other) noexcept
    : fd_(other.fd_), path_(std::move(other.path_)) {
  other.fd_ = -1;
}

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0 && ::close(fd_) != 0) log_warn("close(", path_, ") failed: ", errno_text(errno));
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    other.fd_ = -1;
  }
  return *this;
}

void FileDescriptor::close() {
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;  // POSIX leaves the fd state unspecified after a failed close; never retry it
  QF_SYS_CHECK(::close(fd), path_ + ":", "close failed");
}

// ---- open / stat -------------------------------------------------------------------------------

std::string not_a_regular_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    return S_ISREG(st.st_mode) ? "" : std::string("is ") + kind_of(st.st_mode) + ", not a file";
  }
  const int err = errno;
  struct stat link {};
  if (err == ELOOP) return "is a symlink loop";
  if (err == ENOENT && ::lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
    char target[4096] = {};
    const ssize_t n = ::readlink(path.c_str(), target, sizeof(target) - 1);
    return "is a dangling symlink (to " + std::string(target, n > 0 ? size_t(n) : 0) + ")";
  }
  if (err == ENOENT) return "is missing";
  if (err == ENOTDIR) return "is missing (a component of its path is not a directory)";
  return "cannot be examined: " + errno_text(err);
}

FileDescriptor open_for_read(const std::string& path) {
  int fd = -1;
  // O_NONBLOCK: a FIFO must not block the open until some writer appears; regular files ignore
  // the flag, which is cleared below anyway.
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0 && errno == ELOOP) QF_FAIL(path + ":", "cannot open for reading: a symlink loop");
  QF_SYS_CHECK(fd, path + ":", "cannot open for reading");
  FileDescriptor owner(fd, path);
  struct stat st {};
  QF_SYS_CHECK(::fstat(fd, &st), path + ":", "cannot stat");
  QF_CHECK(S_ISREG(st.st_mode), path + ":", "cannot read it: it is",
           std::string(kind_of(st.st_mode)) + ",", "not a file");
  QF_SYS_CHECK(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK), path + ":",
               "cannot clear O_NONBLOCK");
  return owner;
}

FileDescriptor open_for_write(const std::string& path) {
  int fd = -1;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  QF_SYS_CHECK(fd, path + ":", "cannot open for writing");
  return FileDescriptor(fd, path);
}

uint64_t file_n_bytes(const FileDescriptor& fd) {
  struct stat st {};
  QF_SYS_CHECK(::fstat(fd.get(), &st), fd.path() + ":", "fstat failed");
  QF_CHECK(S_ISREG(st.st_mode), fd.path() + ":", "not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

// ---- transfers ---------------------------------------------------------------------------------

void pread_full(const FileDescriptor& fd, void* dst, uint64_t n_bytes, uint64_t offset) {
  auto* out = static_cast<char*>(dst);
  uint64_t done = 0;
  while (done < n_bytes) {
    const uint64_t chunk = std::min(n_bytes - done, kMaxTransferBytes);
    const ssize_t got = ::pread(fd.get(), out + done, chunk, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    QF_SYS_CHECK(got, fd.path() + ":", "read of", n_bytes, "bytes at offset", offset, "failed");
    QF_CHECK(got > 0, fd.path() + ":", "unexpected end of file reading", n_bytes, "bytes at offset",
             offset, "(got", done, "bytes; was the file truncated?)");
    done += static_cast<uint64_t>(got);
  }
}

void pwrite_full(const FileDescriptor& fd, const void* src, uint64_t n_bytes, uint64_t offset) {
  const auto* in = static_cast<const char*>(src);
  uint64_t done = 0;
  while (done < n_bytes) {
    const uint64_t chunk = std::min(n_bytes - done, kMaxTransferBytes);
    const ssize_t put = ::pwrite(fd.get(), in + done, chunk, static_cast<off_t>(offset + done));
    if (put < 0 && errno == EINTR) continue;
    QF_SYS_CHECK(put, fd.path() + ":", "write of", n_bytes, "bytes at offset", offset, "failed");
    QF_CHECK(put > 0, fd.path() + ":", "write made no progress at offset", offset + done);
    done += static_cast<uint64_t>(put);
  }
}

void fsync_file(const FileDescriptor& fd) {
  QF_SYS_CHECK(::fsync(fd.get()), fd.path() + ":", "fsync failed");
}

namespace {
// The fallback of copy_file_bytes: pread/pwrite through one buffer.
void copy_through_buffer(const FileDescriptor& from, uint64_t from_offset, const FileDescriptor& to,
                         uint64_t to_offset, uint64_t n_bytes) {
  constexpr uint64_t kBufferBytes = 8ull << 20;
  std::vector<uint8_t> buffer(std::min(n_bytes, kBufferBytes));
  for (uint64_t done = 0; done < n_bytes; done += buffer.size()) {
    const uint64_t n = std::min<uint64_t>(buffer.size(), n_bytes - done);
    pread_full(from, buffer.data(), n, from_offset + done);
    pwrite_full(to, buffer.data(), n, to_offset + done);
  }
}
}  // namespace

uint64_t copy_file_bytes(const FileDescriptor& from, uint64_t from_offset, const FileDescriptor& to,
                         uint64_t to_offset, uint64_t n_bytes) {
  uint64_t done = 0;
#ifdef __linux__
  while (done < n_bytes) {
    auto in = static_cast<off64_t>(from_offset + done);
    auto out = static_cast<off64_t>(to_offset + done);
    const size_t chunk = std::min(n_bytes - done, kMaxTransferBytes);
    const ssize_t copied = ::copy_file_range(from.get(), &in, to.get(), &out, chunk, 0);
    if (copied < 0 && errno == EINTR) continue;
    if (copied < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                       errno == EOPNOTSUPP || errno == EBADF || errno == ETXTBSY)) {
      break;  // not possible between these files: the buffered copy below does the rest
    }
    QF_SYS_CHECK(copied, "copying", n_bytes, "bytes from", from.path(), "at offset", from_offset,
                 "to", to.path(), "at offset", to_offset, "failed");
    QF_CHECK(copied > 0, from.path() + ":", "ends before byte", from_offset + n_bytes,
             "(copying into", to.path() + ")");
    done += static_cast<uint64_t>(copied);
  }
#endif
  if (done < n_bytes) {
    copy_through_buffer(from, from_offset + done, to, to_offset + done, n_bytes - done);
  }
  return done;
}

void start_writeback(const FileDescriptor& fd, uint64_t offset, uint64_t n_bytes) {
#ifdef __linux__
  // Errors are ignored on purpose: this is only a hint, and fsync reports real I/O errors.
  int rc = 0;
  do {
    rc = ::sync_file_range(fd.get(), static_cast<off64_t>(offset), static_cast<off64_t>(n_bytes),
                           SYNC_FILE_RANGE_WRITE);
  } while (rc != 0 && errno == EINTR);
#else
  (void)fd, (void)offset, (void)n_bytes;
#endif
}

void fsync_parent_dir(const std::string& path) {
  const std::string dir = parent_dir(path);
  int fd = -1;
  do {
    fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  QF_SYS_CHECK(fd, dir + ":", "cannot open directory to fsync it");
  FileDescriptor owned(fd, dir);
  QF_SYS_CHECK(::fsync(owned.get()), dir + ":", "directory fsync failed");
  owned.close();
}

std::string read_file_bytes(const std::string& path) {
  const FileDescriptor fd = open_for_read(path);
  const uint64_t n_bytes = file_n_bytes(fd);
  std::string bytes(n_bytes, '\0');
  pread_full(fd, bytes.data(), n_bytes, 0);
  return bytes;
}

std::string temp_path_for(const std::string& final_path) {
  return final_path + ".tmp." + std::to_string(static_cast<long>(::getpid()));
}

void rename_file(const std::string& from, const std::string& to) {
  QF_SYS_CHECK(::rename(from.c_str(), to.c_str()), "cannot rename", from, "to", to);
}

void remove_file_noexcept(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    log_warn("cannot remove ", path, ": ", errno_text(errno));
  }
}

}  // namespace qf::formats
