// This process's I/O so far, from Linux's /proc/self/io: bytes that reached storage (page-cache
// misses read, pages written back or to be) and bytes passed through read()/write() calls
// (page cache included). Owns: reading and differencing the counters. Does not own phases.
#pragma once
#include <cstdint>

namespace qf {

struct IoCounters {
  uint64_t disk_read = 0;    // read_bytes
  uint64_t disk_write = 0;   // write_bytes (dirtied pages, whether or not written back yet)
  uint64_t calls_read = 0;   // rchar: read(), pread(), copy_file_range's input, ...
  uint64_t calls_write = 0;  // wchar
  bool available = false;    // false where /proc/self/io is missing or unreadable
};

IoCounters read_io_counters();
// later - earlier, per counter (0 where a counter went backwards); available only if both are.
IoCounters io_since(const IoCounters& earlier, const IoCounters& later);

}  // namespace qf
