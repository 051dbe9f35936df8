// FileLock: a second taker is refused with the holder's pid and host named; a same-host holder
// that exits within the wait (a rank of a killed mpirun) is waited for; a dead holder's lock is
// free at once (the kernel released it).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "catch_compat.hpp"
#include "error_test_util.hpp"
#include "formats/file_lock.hpp"
#include "formats_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using qf::formats::test::TempDir;
using qf::test::contains;
using qf::test::error_of;

namespace {

// A child process that takes the lock, signals through a pipe, then holds it for hold_ms.
pid_t spawn_holder(const std::string& path, int hold_ms, bool remove_at_end = false) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    try {
      FileLock lock = FileLock::acquire(path, "test", "hint", 0);
      const char ok = 1;
      (void)!::write(fds[1], &ok, 1);
      std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
      if (remove_at_end) lock.release_and_remove();
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  char ok = 0;
  REQUIRE(::read(fds[0], &ok, 1) == 1);
  ::close(fds[0]);
  return pid;
}

void reap(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
}

}  // namespace

TEST_CASE("FileLock: the refusal names the live holder", "[formats][lock]") {
  TempDir tmp;
  const std::string path = tmp.file("writer.lock");
  const pid_t child = spawn_holder(path, 5000);
  const std::string message = error_of([&] {
    FileLock::acquire(path, "rank store X", "two runs must not share a work directory", 0);
  });
  INFO(message);
  CHECK(contains(message, "rank store X"));
  CHECK(contains(message, "pid " + std::to_string(child)));
  CHECK(contains(message, "on host "));
  CHECK(contains(message, "two runs must not share a work directory"));
  const LockHolder holder = read_lock_holder(path);
  CHECK(holder.pid == child);
  CHECK(holder.alive_here);
  ::kill(child, SIGKILL);
  reap(child);
  // kill -9 released it: taken at once, and the record now names this process.
  FileLock lock = FileLock::acquire(path, "rank store X", "hint", 0);
  CHECK(lock.held());
  CHECK(read_lock_holder(path).pid == ::getpid());
}

TEST_CASE("FileLock: a same-host holder that exits within the wait is waited for",
          "[formats][lock]") {
  TempDir tmp;
  const std::string path = tmp.file("writer.lock");
  const pid_t child = spawn_holder(path, 700);
  // Without the wait this is refused (the first test case); with it, it is taken.
  FileLock lock = FileLock::acquire(path, "store", "hint", 10.0);
  CHECK(lock.held());
  reap(child);
  lock.release_and_remove();
  CHECK_FALSE(lock.held());
  CHECK_FALSE(qf::formats::test::file_exists(path));
}

TEST_CASE("FileLock: a holder that removes the lock file on release leaves one holder, not two",
          "[formats][lock]") {
  TempDir tmp;
  const std::string path = tmp.file("out.partial.lock");
  const pid_t child = spawn_holder(path, 500, /*remove_at_end=*/true);
  // We wait on the file the child unlinks when done: getting its flock must not count, since a
  // third process would create and lock a new file at the same path.
  FileLock lock = FileLock::acquire(path, "output", "hint", 10.0);
  reap(child);
  CHECK(lock.held());
  REQUIRE(qf::formats::test::file_exists(path));
  CHECK(read_lock_holder(path).pid == ::getpid());
  CHECK(contains(error_of([&] { FileLock::acquire(path, "output", "hint", 0); }),
                 "another live process"));
}
