// ProgressMeter: rate, ETA, TTY bar vs heartbeat lines.
#include "core/progress.hpp"

#include <unistd.h>

#include <cstdio>

#include "core/log.hpp"
#include "core/progress_stream.hpp"

namespace qf {

ProgressMeter::ProgressMeter(std::string label, uint64_t total, std::string unit,
                             double interval_seconds)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      interval_(interval_seconds),
      enabled_(process_rank() == 0 && log_level() <= LogLevel::kInfo),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_),
      last_event_(start_) {}

ProgressMeter::~ProgressMeter() { finish(); }

void ProgressMeter::advance(uint64_t n_units) {
  done_ += n_units;
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_event_).count() >= kEventIntervalSeconds) {
    last_event_ = now;
    emit_event();
  }
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (since >= (tty_ ? 0.2 : interval_)) {
    last_print_ = now;
    print(false);
  }
}

void ProgressMeter::finish() {
  if (finished_) return;
  finished_ = true;
  emit_event();
  print(true);
}

void ProgressMeter::emit_event() const {
  if (!progress_stream::active()) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? double(done_) / elapsed : 0.0;
  nlohmann::json fields = {{"phase", progress_stream::current_phase()},
                           {"label", label_},
                           {"done", done_},
                           {"total", total_},
                           {"unit", unit_},
                           {"rate", rate},
                           {"eta_seconds", nullptr}};
  if (rate > 0) fields["eta_seconds"] = double(total_ - std::min(done_, total_)) / rate;
  progress_stream::emit("progress", fields);
}

std::string ProgressMeter::format_bytes(double n_bytes, ByteUnits units) {
  const bool binary = units == ByteUnits::kBinary;
  const char* names[2][6] = {{"B", "KB", "MB", "GB", "TB", "PB"},
                             {"B", "KiB", "MiB", "GiB", "TiB", "PiB"}};
  const double base = binary ? 1024.0 : 1000.0;
  int unit = 0;
  while (n_bytes >= base && unit < 5) {
    n_bytes /= base;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text),
                unit == 0 ? "%.0f %s"
                : binary  ? "%.2f %s"
                          : "%.1f %s",
                n_bytes, names[binary][unit]);
  return text;
}

std::string ProgressMeter::format_seconds(double seconds) {
  char text[32];
  if (seconds < 60) {
    std::snprintf(text, sizeof(text), "%.1fs", seconds);
  } else if (seconds < 3600) {
    std::snprintf(text, sizeof(text), "%dm%02ds", int(seconds) / 60, int(seconds) % 60);
  } else {
    std::snprintf(text, sizeof(text), "%dh%02dm", int(seconds) / 3600, int(seconds) / 60 % 60);
  }
  return text;
}

void ProgressMeter::print(bool final_line) {
  if (!enabled_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double fraction = total_ ? double(done_) / double(total_) : 1.0;
  const double rate = elapsed > 0 ? double(done_) / elapsed : 0.0;
  const double eta = rate > 0 ? double(total_ - std::min(done_, total_)) / rate : 0.0;
  const bool bytes = unit_ == "B";
  const std::string done_text = bytes ? format_bytes(double(done_)) : std::to_string(done_);
  const std::string total_text = bytes ? format_bytes(double(total_)) : std::to_string(total_);
  const std::string rate_text =
      bytes ? format_bytes(rate) + "/s" : str_cat(int64_t(rate), " ", unit_, "/s");
  char line[512];
  if (tty_) {
    const int width = 30;
    const int filled = int(fraction * width + 0.5);
    std::snprintf(line, sizeof(line), "\r%s [%s%s] %5.1f%% %s/%s %s %s %s", label_.c_str(),
                  std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                  100.0 * fraction, done_text.c_str(), total_text.c_str(), rate_text.c_str(),
                  final_line ? "in" : "ETA", format_seconds(final_line ? elapsed : eta).c_str());
    std::fputs(line, stderr);
    if (final_line) std::fputs("\n", stderr);
    std::fflush(stderr);
  } else {
    log_info(label_, ": ", done_text, "/", total_text, " (", int(100.0 * fraction), "%) ",
             rate_text, final_line ? " done in " : " ETA ",
             format_seconds(final_line ? elapsed : eta));
  }
}

}  // namespace qf
