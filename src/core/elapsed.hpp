// Wall time since a steady_clock point, in seconds: the one clock of the per-phase timings.
#pragma once
#include <chrono>

namespace qf {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace qf
