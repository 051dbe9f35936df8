// formats::copy_file_bytes: the kernel copy (copy_file_range) of a byte range between files, and
// its buffered fallback where the kernel cannot (another filesystem), give the same bytes; the
// rest of the destination is untouched; a range past the source's end is an error naming it.
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "formats/posix_file.hpp"
#include "formats/staged_output.hpp"
#include "formats_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using qf::formats::test::TempDir;

namespace {

std::vector<uint8_t> pattern(size_t n) {
  std::vector<uint8_t> bytes(n);
  uint32_t x = 12345;
  for (auto& b : bytes) {
    x = x * 1664525u + 1013904223u;
    b = uint8_t(x >> 24);
  }
  return bytes;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  FileDescriptor fd = open_for_write(path);
  pwrite_full(fd, bytes.data(), bytes.size(), 0);
  fd.close();
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  FileDescriptor fd = open_for_read(path);
  std::vector<uint8_t> bytes(file_n_bytes(fd));
  pread_full(fd, bytes.data(), bytes.size(), 0);
  return bytes;
}

// Copies [from, from + n) of a patterned source in `src_dir` to `to` of a zeroed destination in
// `dst_dir` and checks every byte of the destination.
void check_copy(const std::string& src_dir, const std::string& dst_dir, uint64_t from, uint64_t to,
                uint64_t n) {
  const auto source = pattern(24u << 20);
  write_bytes(src_dir + "/src.bin", source);
  write_bytes(dst_dir + "/dst.bin", std::vector<uint8_t>(size_t(to + n + 4096), 0));
  {
    FileDescriptor in = open_for_read(src_dir + "/src.bin");
    FileDescriptor out = open_for_pwrite(dst_dir + "/dst.bin");
    const uint64_t in_kernel = copy_file_bytes(in, from, out, to, n);
    CHECK(in_kernel <= n);
    out.close();
  }
  const auto result = read_bytes(dst_dir + "/dst.bin");
  for (uint64_t i = 0; i < result.size(); ++i) {
    const uint8_t want = (i >= to && i < to + n) ? source[size_t(from + i - to)] : 0;
    if (result[size_t(i)] != want) {
      FAIL("byte " << i << " is " << int(result[size_t(i)]) << ", expected " << int(want));
    }
  }
}

}  // namespace

TEST_CASE("copy_file_bytes copies a range at any offsets, nothing else", "[posix_file]") {
  TempDir tmp;
  check_copy(tmp.path(), tmp.path(), 1000, 333, (10u << 20) + 7);
  check_copy(tmp.path(), tmp.path(), 0, 0, 1);
  check_copy(tmp.path(), tmp.path(), 5, 17, 0);
}

TEST_CASE("copy_file_bytes falls back where the kernel cannot copy", "[posix_file]") {
  TempDir tmp;
  struct stat shm {
  }, here{};
  if (::stat("/dev/shm", &shm) != 0 || ::stat(tmp.path().c_str(), &here) != 0 ||
      shm.st_dev == here.st_dev) {
    SUCCEED("no second filesystem to copy from");
    return;
  }
  char pattern_dir[] = "/dev/shm/qf_copy_test_XXXXXX";
  REQUIRE(::mkdtemp(pattern_dir) != nullptr);
  const std::string shm_dir = pattern_dir;
  check_copy(shm_dir, tmp.path(), 4096 + 3, 11, (9u << 20) + 1);
  std::filesystem::remove_all(shm_dir);
}

TEST_CASE("copy_file_bytes past the end of the source is an error naming it", "[posix_file]") {
  TempDir tmp;
  write_bytes(tmp.path() + "/short.bin", pattern(100));
  write_bytes(tmp.path() + "/dst.bin", std::vector<uint8_t>(1000, 0));
  FileDescriptor in = open_for_read(tmp.path() + "/short.bin");
  FileDescriptor out = open_for_pwrite(tmp.path() + "/dst.bin");
  try {
    copy_file_bytes(in, 50, out, 0, 100);
    FAIL("a copy past the end was accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("short.bin") != std::string::npos);
  }
}
