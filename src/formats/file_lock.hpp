// An exclusive flock() on a lock file whose contents name the holder (pid, host, since when), so
// that a refused run can say who holds it. The kernel releases the lock when the holder dies
// (kill -9 leaves nothing stale). Owns the lock protocol; what it protects is the caller's.
#pragma once
#include <string>

#include "formats/posix_file.hpp"

namespace qf::formats {

// Who wrote a lock file last (empty fields for a file without that record).
struct LockHolder {
  long pid = 0;
  std::string host;
  std::string since;             // UTC, ISO 8601
  bool alive_here = false;       // on this host and /proc/<pid> exists
  std::string describe() const;  // "pid 1234 on host node7 since 2026-12-05T13:05:02Z" or ""
};
LockHolder read_lock_holder(const std::string& lock_path);

class FileLock {
 public:
  FileLock() = default;
  // Takes the lock on `lock_path` (created if absent) and writes this process as its holder.
  // When another live process holds it: if that holder runs on this host (a rank of a killed
  // mpirun lives on for a second or two) wait up to `wait_seconds` for it to exit, else fail at
  // once; the qf::Error names `what`, the lock file, the holder and why two runs must not share
  // it (`hint`). Where the file system has no flock (some network file systems) a warning is
  // logged and the lock is taken without exclusion.
  static FileLock acquire(const std::string& lock_path, const std::string& what,
                          const std::string& hint, double wait_seconds);

  bool held() const { return fd_.valid(); }  // false only for a default-made or released lock
  const std::string& path() const { return path_; }
  // Unlinks the lock file while still holding it (the protected thing is gone), then releases.
  void release_and_remove() noexcept;

 private:
  FileLock(FileDescriptor fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  FileDescriptor fd_;
  std::string path_;
};

// Seconds a run waits for a same-host lock holder that may be exiting: QF_LOCK_WAIT_SECONDS if
// set (>= 0), else 10.
double lock_wait_seconds();

}  // namespace qf::formats
