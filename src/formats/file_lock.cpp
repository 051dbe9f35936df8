// FileLock: flock() plus a holder record in the lock file (see file_lock.hpp).
#include "formats/file_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <sstream>
#include <thread>

#include "core/check.hpp"
#include "core/log.hpp"

namespace qf::formats {
namespace {

std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "?";
  return name;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// 0 when taken, else the errno of the failed attempt.
int try_flock(int fd) {
  int rc = 0;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : errno;
}

void write_holder(const FileDescriptor& fd) {
  std::ostringstream text;
  text << "pid " << ::getpid() << "\nhost " << this_host() << "\nsince " << utc_now() << "\n";
  const std::string s = text.str();
  if (::ftruncate(fd.get(), 0) != 0) return;  // the record is advisory; the flock is the lock
  pwrite_full(fd, s.data(), s.size(), 0);
}

}  // namespace

std::string LockHolder::describe() const {
  if (pid <= 0) return "";
  return "pid " + std::to_string(pid) + " on host " + host +
         (since.empty() ? "" : " since " + since);
}

LockHolder read_lock_holder(const std::string& lock_path) {
  LockHolder h;
  std::string text;
  try {
    text = read_file_bytes(lock_path);
  } catch (const Error&) {
    return h;
  }
  std::istringstream in(text.substr(0, 4096));
  std::string key;
  while (in >> key) {
    if (key == "pid")
      in >> h.pid;
    else if (key == "host")
      in >> h.host;
    else if (key == "since")
      in >> h.since;
  }
  struct stat st {};
  h.alive_here = h.pid > 0 && h.host == this_host() &&
                 ::stat(("/proc/" + std::to_string(h.pid)).c_str(), &st) == 0;
  return h;
}

double lock_wait_seconds() {
  if (const char* env = std::getenv("QF_LOCK_WAIT_SECONDS")) {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    if (end != env && v >= 0) return v;
  }
  return 10.0;
}

namespace {

FileDescriptor open_lock_file(const std::string& lock_path, const std::string& what) {
  int fd = -1;
  do {
    fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  QF_SYS_CHECK(fd, lock_path + ":", "cannot open the lock file of", what);
  return FileDescriptor(fd, lock_path);
}

// Whether `lock_path` still names the file `fd` holds. A holder removes its lock file when it
// is done (release_and_remove); a process that got the flock of the removed file while waiting
// must not count as the holder, or two processes could hold "the" lock at once.
bool still_linked(const FileDescriptor& fd, const std::string& lock_path) {
  struct stat held {
  }, named{};
  return ::fstat(fd.get(), &held) == 0 && ::stat(lock_path.c_str(), &named) == 0 &&
         held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

// flock with the wait for a same-host holder that is exiting; EWOULDBLOCK is an error naming it.
int lock_or_fail(const FileDescriptor& lock, const std::string& lock_path, const std::string& what,
                 const std::string& hint, double wait_seconds) {
  int err = try_flock(lock.get());
  if (err != EWOULDBLOCK) return err;
  LockHolder holder = read_lock_holder(lock_path);
  if (holder.alive_here && holder.pid != ::getpid() && wait_seconds > 0) {
    log_warn(what, " is locked by ", holder.describe(), "; waiting up to ", wait_seconds,
             " s for it to exit (a rank of a killed mpirun lives on for a moment)");
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(wait_seconds * 1000));
    while (err == EWOULDBLOCK && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      err = try_flock(lock.get());
    }
    if (err == EWOULDBLOCK) holder = read_lock_holder(lock_path);
  }
  QF_CHECK(err != EWOULDBLOCK, what + ":", "another live process",
           holder.pid > 0 ? "(" + holder.describe() + ")" : std::string("(holder unknown)"),
           "holds", lock_path + ";", hint);
  return err;
}

}  // namespace

FileLock FileLock::acquire(const std::string& lock_path, const std::string& what,
                           const std::string& hint, double wait_seconds) {
  constexpr int kMaxAttempts = 20;  // each retry means a holder released the file meanwhile
  for (int attempt = 1;; ++attempt) {
    FileDescriptor lock = open_lock_file(lock_path, what);
    const int err = lock_or_fail(lock, lock_path, what, hint, wait_seconds);
    if (err != 0) {
      QF_CHECK(err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS || err == EINVAL,
               lock_path + ":", "flock failed:", errno_text(err));
      log_warn(lock_path, ": file locking is not supported here (", errno_text(err), "); ", hint);
    } else if (!still_linked(lock, lock_path)) {
      QF_CHECK(attempt < kMaxAttempts, what + ":", lock_path,
               "keeps being removed and re-created by other processes; cannot take it");
      continue;
    }
    write_holder(lock);
    return FileLock(std::move(lock), lock_path);
  }
}

void FileLock::release_and_remove() noexcept {
  if (!fd_.valid()) return;
  ::unlink(path_.c_str());
  fd_ = FileDescriptor();
}

}  // namespace qf::formats
