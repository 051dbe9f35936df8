// Shared helpers for the formats/ unit tests: temp dirs, raw file bytes, error expectations.
// Owns: test scaffolding only. Does not own: any production code path.
#pragma once
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "core/check.hpp"

namespace qf::formats::test {

// mkdtemp under /tmp, removed recursively on destruction.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/qf_formats_test_XXXXXX";
    const char* made = ::mkdtemp(pattern);
    REQUIRE(made != nullptr);
    path_ = made;
  }
  ~TempDir() {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline bool file_exists(const std::string& path) {
  std::error_code error;
  return std::filesystem::exists(path, error);
}

inline std::string u64_le(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
  return bytes;
}

// A safetensors file from its raw parts: [u64 LE len(json)][json][data].
inline std::string raw_safetensors(const std::string& json, const std::string& data) {
  return u64_le(json.size()) + json + data;
}

// Runs fn; requires a qf::Error whose message contains every one of `needles`.
inline void require_error(const std::function<void()>& fn,
                          const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const qf::Error& e) {
    for (const std::string& needle : needles) {
      INFO("message: " << e.message());
      CHECK(e.message().find(needle) != std::string::npos);
    }
    return;
  }
  FAIL("expected qf::Error mentioning " << (needles.empty() ? "" : needles[0]));
}

}  // namespace qf::formats::test
