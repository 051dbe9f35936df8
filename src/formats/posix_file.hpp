// Checked POSIX file primitives shared by the formats module (fd RAII, full pread/pwrite, fsync).
// Owns: retry-on-EINTR/short-transfer loops and errno reporting. Does not own: file formats.
#pragma once
#include <cstdint>
#include <string>

namespace qf::formats {

// Move-only owner of a file descriptor. The destructor closes and logs a failure; call close()
// where a failed close must be an error (after writing).
class FileDescriptor {
 public:
  FileDescriptor() = default;
  FileDescriptor(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~FileDescriptor();
  FileDescriptor(FileDescriptor&& other) noexcept;
  FileDescriptor& operator=(FileDescriptor&& other) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  void close();  // throws qf::Error naming the file

 private:
  int fd_ = -1;
  std::string path_;
};

// Refuses what is not a regular file (following symlinks) with an error saying what it is (a
// directory, a FIFO: never blocks waiting for a writer, a device, a symlink loop).
FileDescriptor open_for_read(const std::string& path);
// "" when `path` (symlinks followed) is a regular file; else what it is, for messages: "is
// missing", "is a directory, not a file", "is a FIFO (named pipe), not a file", "is a symlink
// loop", "is a dangling symlink (to T)", "cannot be examined: <errno text>".
std::string not_a_regular_file(const std::string& path);
// O_WRONLY | O_CREAT | O_TRUNC, mode 0644.
FileDescriptor open_for_write(const std::string& path);
uint64_t file_n_bytes(const FileDescriptor& fd);  // fstat; throws naming the file
// Reads exactly n_bytes at offset; throws naming the file on errors and on end-of-file.
void pread_full(const FileDescriptor& fd, void* dst, uint64_t n_bytes, uint64_t offset);
// Writes exactly n_bytes at offset; throws naming the file (ENOSPC included).
void pwrite_full(const FileDescriptor& fd, const void* src, uint64_t n_bytes, uint64_t offset);
void fsync_file(const FileDescriptor& fd);
// Copies n_bytes at from_offset of `from` to to_offset of `to` inside the kernel
// (copy_file_range: no user-space copy, a reflink where the filesystem can), falling back to
// pread/pwrite through a buffer where the kernel cannot (another filesystem, no support).
// Throws naming both files; end-of-file of `from` is an error. Returns the bytes the kernel copied
// itself (the rest went through the fallback), for reports.
uint64_t copy_file_bytes(const FileDescriptor& from, uint64_t from_offset, const FileDescriptor& to,
                         uint64_t to_offset, uint64_t n_bytes);
// Starts the disk write of [offset, offset + n_bytes) (n_bytes 0: to the end of the file) and
// returns without waiting for it (Linux sync_file_range; a no-op elsewhere), so that the disk
// works while we go on and a later fsync finds little left. A hint only: fsync gives durability.
void start_writeback(const FileDescriptor& fd, uint64_t offset, uint64_t n_bytes);
void fsync_parent_dir(const std::string& path);  // the directory holding path
std::string read_file_bytes(const std::string& path);
// "<path>.tmp.<pid>": the temp name that write_file_atomic and SafetensorsWriter use.
std::string temp_path_for(const std::string& final_path);
// rename(2) with an error naming both paths.
void rename_file(const std::string& from, const std::string& to);
// unlink(2) that logs instead of throwing (for destructors and cleanup paths).
void remove_file_noexcept(const std::string& path);

}  // namespace qf::formats
