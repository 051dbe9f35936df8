// read_io_counters: on Linux the counters move by at least the bytes this process passes
// through write() and read(); io_since differences them and never goes negative.
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "core/io_counters.hpp"
#include "formats/posix_file.hpp"
#include "formats_test_util.hpp"

using namespace qf;

TEST_CASE("the I/O counters follow this process's reads and writes", "[io_counters]") {
  const IoCounters before = read_io_counters();
#ifdef __linux__
  REQUIRE(before.available);
#else
  if (!before.available) return;
#endif
  formats::test::TempDir tmp;
  const std::vector<uint8_t> bytes(3u << 20, 7);
  {
    formats::FileDescriptor fd = formats::open_for_write(tmp.path() + "/f.bin");
    formats::pwrite_full(fd, bytes.data(), bytes.size(), 0);
    fd.close();
  }
  const IoCounters written = read_io_counters();
  std::vector<uint8_t> back(bytes.size());
  {
    formats::FileDescriptor fd = formats::open_for_read(tmp.path() + "/f.bin");
    formats::pread_full(fd, back.data(), back.size(), 0);
  }
  const IoCounters read = read_io_counters();
  const IoCounters w = io_since(before, written), r = io_since(written, read);
  CHECK(w.available);
  CHECK(w.calls_write >= bytes.size());
  CHECK(r.calls_read >= bytes.size());
  CHECK(back == bytes);
  const IoCounters backwards = io_since(read, before);  // arguments swapped: zeros, not wraps
  CHECK(backwards.calls_read == 0);
  CHECK(backwards.calls_write == 0);
  CHECK(backwards.disk_read == 0);
  CHECK(backwards.disk_write == 0);
}
