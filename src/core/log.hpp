// Logging to stderr (stdout stays clean for tables and machine output).
// Owns: levels, rank prefixes, the rank-0-only default. Does not own: progress bars (progress.hpp).
#pragma once
#include <string>

#include "core/check.hpp"
#include "core/enum_table.hpp"

namespace qf {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kQuiet = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
const EnumTable<LogLevel>& log_levels();  // parse, name and --help of --log-level

// Prints one line (already formatted) if `level` passes and this is rank 0, or `all_ranks`.
void log_line(LogLevel level, bool all_ranks, const std::string& text);

template <typename... Args>
void log_debug(const Args&... args) {
  log_line(LogLevel::kDebug, false, str_cat(args...));
}
template <typename... Args>
void log_info(const Args&... args) {
  log_line(LogLevel::kInfo, false, str_cat(args...));
}
template <typename... Args>
void log_warn(const Args&... args) {
  log_line(LogLevel::kWarn, false, str_cat(args...));
}
// Errors are printed by whichever rank hits them.
template <typename... Args>
void log_error(const Args&... args) {
  log_line(LogLevel::kError, true, str_cat(args...));
}
// Info on every rank, prefixed with [rRR/WW host].
template <typename... Args>
void log_all(const Args&... args) {
  log_line(LogLevel::kInfo, true, str_cat(args...));
}

}  // namespace qf
