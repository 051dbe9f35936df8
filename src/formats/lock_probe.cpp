// probe_lock: /proc/locks, then F_OFD_GETLK, then the file system type (see lock_probe.hpp).
#include "formats/lock_probe.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace qf::formats {
namespace {

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#endif

// File systems that live on one host: a holder on another host is impossible there.
bool is_local_fs(long type) {
  switch (static_cast<unsigned long>(type)) {
    case 0xEF53:      // ext2/3/4
    case 0x58465342:  // xfs
    case 0x01021994:  // tmpfs
    case 0x9123683E:  // btrfs
    case 0x794C7630:  // overlayfs
    case 0x2FC12FC1:  // zfs
    case 0xF2F52010:  // f2fs
      return true;
    default:
      return false;
  }
}
bool is_nfs(long type) { return static_cast<unsigned long>(type) == 0x6969; }

std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "?";
  return name;
}

// The pid of a FLOCK (or POSIX) lock on (dev, ino) in /proc/locks; 0 when none is listed, -1
// when /proc/locks cannot be read. Lines: "1: FLOCK  ADVISORY  WRITE 21529 fe:00:10953339 0 EOF"
// (blocked waiters carry "->" after the id and are skipped).
long proc_locks_holder(dev_t dev, ino_t ino) {
  std::ifstream in("/proc/locks");
  if (!in) return -1;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, kind, mode, access, where;
    long pid = 0;
    if (!(fields >> id >> kind)) continue;
    if (kind == "->") continue;
    if (!(fields >> mode >> access >> pid >> where)) continue;
    unsigned int major_id = 0, minor_id = 0;
    unsigned long long inode = 0;
    if (std::sscanf(where.c_str(), "%x:%x:%llu", &major_id, &minor_id, &inode) != 3) continue;
    if (inode == static_cast<unsigned long long>(ino) && major_id == major(dev) &&
        minor_id == minor(dev)) {
      return pid > 0 ? pid : 1;  // a pid outside our namespace may read as 0: still held
    }
  }
  return 0;
}

// F_OFD_GETLK (F_GETLK where the kernel lacks it) for a write lock over the whole file: a
// query that takes nothing. Returns the conflicting pid (OFD locks report -1: then 1), 0 when
// no POSIX lock conflicts, -1 when the query failed.
long fcntl_holder(int fd) {
  struct flock query {};
  query.l_type = F_WRLCK;
  query.l_whence = SEEK_SET;
  query.l_start = 0;
  query.l_len = 0;
  if (::fcntl(fd, F_OFD_GETLK, &query) != 0) {
    if (errno != EINVAL) return -1;
    query = {};
    query.l_type = F_WRLCK;
    query.l_whence = SEEK_SET;
    if (::fcntl(fd, F_GETLK, &query) != 0) return -1;
  }
  if (query.l_type == F_UNLCK) return 0;
  return query.l_pid > 0 ? query.l_pid : 1;
}

}  // namespace

const char* lock_state_name(LockState state) {
  switch (state) {
    case LockState::kAbsent:
      return "absent";
    case LockState::kHeld:
      return "held";
    case LockState::kFree:
      return "free";
    case LockState::kUnknown:
      return "unknown";
  }
  return "?";
}

LockProbe probe_lock(const std::string& lock_path) {
  LockProbe probe;
  int fd = -1;
  do {
    fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    probe.state = LockState::kAbsent;
    probe.how = errno == ENOENT ? "no lock file" : "lock file unreadable";
    return probe;
  }
  FileDescriptor file(fd, lock_path);
  probe.record = read_lock_holder(lock_path);
  struct stat st {};
  if (::fstat(fd, &st) == 0) {
    const long pid = proc_locks_holder(st.st_dev, st.st_ino);
    if (pid > 0) {
      probe.state = LockState::kHeld;
      probe.how = "/proc/locks";
      probe.holder_pid = pid;
      return probe;
    }
  }
  const long pid = fcntl_holder(fd);
  if (pid > 0) {
    probe.state = LockState::kHeld;
    probe.how = "F_OFD_GETLK";
    probe.holder_pid = pid;
    return probe;
  }
  struct statfs fs {};
  const bool fs_known = ::fstatfs(fd, &fs) == 0;
  const bool remote_record = probe.record.pid > 0 && probe.record.host != this_host();
  if (remote_record && !(fs_known && (is_nfs(fs.f_type) || is_local_fs(fs.f_type)))) {
    probe.state = LockState::kUnknown;
    probe.how =
        "holder on host " + probe.record.host + ": this file system may not show its flock() here";
    return probe;
  }
  probe.state = LockState::kFree;
  probe.how = "/proc/locks + F_OFD_GETLK";
  return probe;
}

}  // namespace qf::formats
