// Scaffolding shared by the libFuzzer targets: the input written to a private temp file (the
// readers under test take paths) and the rule that a qf::Error is a correct answer to bad input
// while anything else (a crash, a sanitizer report, another exception type) is a finding.
#pragma once
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/check.hpp"

namespace qf::fuzz {

// One temp file per process, rewritten for every input (libFuzzer runs inputs one at a time).
inline std::string write_input(const uint8_t* data, size_t size, const char* suffix) {
  static std::string dir;
  if (dir.empty()) {
    char pattern[] = "/tmp/qf_fuzz_XXXXXX";
    const char* made = ::mkdtemp(pattern);
    if (made == nullptr) ::abort();
    dir = made;
  }
  const std::string path = dir + "/input" + suffix;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) ::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) ::abort();
  std::fclose(f);
  return path;
}

// Runs fn; qf::Error (the documented answer to bad input) is swallowed, anything else escapes
// and libFuzzer reports it.
template <typename Fn>
void expect_ok_or_error(Fn fn) {
  try {
    fn();
  } catch (const qf::Error&) {
  }
}

}  // namespace qf::fuzz
