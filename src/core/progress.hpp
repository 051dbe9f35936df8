// Progress of a long job on rank 0: a live bar on a terminal, heartbeat lines otherwise
// (Slurm logs, CI). Owns: rate/ETA arithmetic and pacing. Does not own what is counted.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace qf {

class ProgressMeter {
 public:
  // `total` units (bytes, tensors, tokens) named `unit`; prints at most every `interval`.
  // Silent on ranks other than 0 and when the log level is above info. With a progress stream
  // open (progress_stream.hpp), also a "progress" event at most every kEventIntervalSeconds and
  // at finish, whatever the log level.
  ProgressMeter(std::string label, uint64_t total, std::string unit,
                double interval_seconds = 10.0);
  ~ProgressMeter();
  void advance(uint64_t n_units);
  void finish();  // prints the final line once (also called by the destructor)

  // The one byte formatter: kDecimal "12.3 GB" (powers of 1000, one decimal; rates, logs),
  // kBinary "11.46 GiB" (powers of 1024, two decimals; checkpoint sizes in tables).
  enum class ByteUnits { kDecimal, kBinary };
  static std::string format_bytes(double n_bytes, ByteUnits units = ByteUnits::kDecimal);
  static std::string format_seconds(double seconds);  // "1h02m", "3m05s", "12.4s"

 private:
  static constexpr double kEventIntervalSeconds = 1.0;
  void print(bool final_line);
  void emit_event() const;
  std::string label_;
  std::string unit_;
  uint64_t total_;
  uint64_t done_ = 0;
  double interval_;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_print_;
  std::chrono::steady_clock::time_point last_event_;
};

}  // namespace qf
