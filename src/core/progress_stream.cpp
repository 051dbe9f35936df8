// progress_stream: the JSON-lines event file of rank 0 (see progress_stream.hpp).
#include "core/progress_stream.hpp"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

#include "core/check.hpp"

namespace qf::progress_stream {
namespace {

struct Stream {
  std::mutex mutex;
  int fd = -1;
  std::string path;
  std::string job;
  std::string phase;
  std::chrono::steady_clock::time_point start;
};

Stream& stream() {
  static Stream s;
  return s;
}

// "2026-12-05T13:05:02.123Z"
std::string utc_now_ms() {
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  std::tm tm{};
  const std::time_t seconds = tv.tv_sec;
  gmtime_r(&seconds, &tm);
  char text[40];
  const size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(text + n, sizeof(text) - n, ".%03dZ", static_cast<int>(tv.tv_usec / 1000));
  return text;
}

// One write() per line: with O_APPEND the kernel places it at the end in one piece.
bool write_line(int fd, const std::string& line) {
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

void open(const std::string& path, const std::string& job) {
  if (path.empty() || process_rank() != 0) return;
  Stream& s = stream();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.fd >= 0) ::close(s.fd);
  int fd = -1;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  QF_CHECK(fd >= 0, "--progress-json", path + ":",
           "cannot open for appending:", std::strerror(errno));
  s.fd = fd;
  s.path = path;
  s.job = job;
  s.phase.clear();
  s.start = std::chrono::steady_clock::now();
}

void close() {
  Stream& s = stream();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.fd >= 0) ::close(s.fd);
  s.fd = -1;
}

bool active() {
  Stream& s = stream();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.fd >= 0;
}

void emit(const char* event, const nlohmann::json& fields) {
  Stream& s = stream();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.fd < 0) return;
  std::string line;
  try {
    nlohmann::json doc = {
        {"v", kProgressSchemaVersion},
        {"event", event},
        {"time", utc_now_ms()},
        {"t", std::chrono::duration<double>(std::chrono::steady_clock::now() - s.start).count()},
        {"job", s.job}};
    if (fields.is_object()) {
      for (const auto& item : fields.items()) doc[item.key()] = item.value();
    }
    // Invalid UTF-8 (a path, a message) is replaced rather than failing the line.
    line = doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  } catch (const std::exception&) {
    return;
  }
  if (!write_line(s.fd, line)) {
    const int err = errno;
    ::close(s.fd);
    s.fd = -1;
    // Not log_warn: that would come back here. The job goes on without its stream.
    std::fprintf(stderr, "warning: --progress-json %s: write failed (%s); no more events\n",
                 s.path.c_str(), std::strerror(err));
  }
}

void phase(const std::string& name) {
  std::string previous;
  {
    Stream& s = stream();
    std::lock_guard<std::mutex> lock(s.mutex);
    previous = s.phase;
    s.phase = name;
  }
  emit("phase", {{"phase", name}, {"previous", previous}});
}

std::string current_phase() {
  Stream& s = stream();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.phase;
}

}  // namespace qf::progress_stream
