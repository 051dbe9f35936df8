// stderr logger: one mutex-guarded write per line so threads never interleave within a line.
#include "core/log.hpp"

#include <unistd.h>

#include <cstdio>
#include <mutex>

#include "core/progress_stream.hpp"
#include "core/strings.hpp"

namespace qf {
namespace {
LogLevel g_level = LogLevel::kInfo;
std::mutex g_mutex;

const char* level_tag(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug: ";
    case LogLevel::kWarn:
      return "warning: ";
    case LogLevel::kError:
      return "error: ";
    default:
      return "";
  }
}
}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }

const EnumTable<LogLevel>& log_levels() {
  static const EnumTable<LogLevel> table(
      "--log-level", {{"debug", LogLevel::kDebug, "also per-layer and per-rank details"},
                      {"info", LogLevel::kInfo, "progress, results and summaries"},
                      {"warn", LogLevel::kWarn, "warnings and errors only"},
                      {"error", LogLevel::kError, "errors only"},
                      {"quiet", LogLevel::kQuiet, "nothing"}});
  return table;
}

void log_line(LogLevel level, bool all_ranks, const std::string& text) {
  // Warnings and errors also go to the progress stream (rank 0's only; whatever the level).
  if (level == LogLevel::kWarn || level == LogLevel::kError) {
    progress_stream::emit(level == LogLevel::kWarn ? "warning" : "error",
                          {{"message", text}, {"rank", process_rank()}});
  }
  if (level < g_level) return;
  if (!all_ranks && process_rank() != 0) return;
  std::string line;
  if (process_world_size() > 1 && all_ranks) {
    char host[64] = "?";
    gethostname(host, sizeof(host) - 1);
    char prefix[128];
    std::snprintf(prefix, sizeof(prefix), "[r%02d/%02d %s] ", process_rank(), process_world_size(),
                  host);
    line += prefix;
  }
  line += level_tag(level);
  line += escape_nonprintable(text, /*keep_line_breaks=*/true);
  line += '\n';
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace qf
