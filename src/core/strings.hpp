// Small string helpers the pipeline needs in many places: tensor-name prefixes and suffixes,
// printf-style formatting into a std::string (fixed-width tables).
#pragma once
#include <cstdarg>
#include <cstdio>
#include <string>

namespace qf {

inline bool starts_with(const std::string& s, const std::string& head) {
  return s.compare(0, head.size(), head) == 0;
}

inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// printf into a std::string of any length.
inline std::string str_printf(const char* format, ...) __attribute__((format(printf, 1, 2)));
inline std::string str_printf(const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  std::string out(n > 0 ? size_t(n) : 0, '\0');
  if (n > 0) std::vsnprintf(out.data(), out.size() + 1, format, again);
  va_end(again);
  return out;
}

}  // namespace qf
