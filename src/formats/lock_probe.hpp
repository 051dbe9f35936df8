// Whether a FileLock (file_lock.hpp) is held right now, found without taking it and without
// opening the lock file for writing, so that looking never disturbs a writer (a flock(LOCK_SH)
// attempt would: a run starting at that instant would find the lock taken and refuse to start).
// Owns: the probe. Does not own the lock protocol (file_lock) or what the lock protects.
#pragma once
#include <string>

#include "formats/file_lock.hpp"

namespace qf::formats {

enum class LockState {
  kAbsent,   // no lock file: nobody holds it (a finished run removes it)
  kHeld,     // a live process holds it (seen in /proc/locks, or by F_OFD_GETLK/F_GETLK)
  kFree,     // nobody on this host holds it, and the file system would show a remote holder
  kUnknown,  // nobody on this host holds it, but the holder record names another host and this
             // file system may not show remote flock()s (Lustre, GPFS, ...): cannot tell
};
const char* lock_state_name(LockState state);  // "absent" | "held" | "free" | "unknown"

struct LockProbe {
  LockState state = LockState::kAbsent;
  std::string how;      // "/proc/locks", "F_OFD_GETLK", "no lock file", ...
  long holder_pid = 0;  // the pid the kernel reports for the holder (0 if not seen)
  LockHolder record;    // what the lock file says (pid, host, since): the last taker
};

// How the probe works (Linux): flock() locks are invisible to fcntl's F_GETLK on local file
// systems (ext4, xfs, tmpfs: tested), but listed in /proc/locks as "FLOCK ... MAJ:MIN:INODE";
// on NFS the kernel emulates flock() with POSIX locks, which F_OFD_GETLK (F_GETLK before Linux
// 3.15) reports, including holders on other hosts. So: /proc/locks first (matched by device and
// inode of the lock file), then F_OFD_GETLK on a read-only descriptor (a query: it takes
// nothing). Neither needs write access.
LockProbe probe_lock(const std::string& lock_path);

}  // namespace qf::formats
