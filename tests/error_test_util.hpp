// Small helpers the unit tests share for checking errors and writing inputs.
#pragma once
#include <fstream>
#include <string>

#include "core/check.hpp"

namespace qf::test {

// The message of the qf::Error fn throws, "" if it throws none.
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Writes text to path (replacing it), bytes as given.
inline bool write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out << text;
  return out.good();
}

}  // namespace qf::test
