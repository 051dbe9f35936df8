// read_io_counters / io_since (see io_counters.hpp).
#include "core/io_counters.hpp"

#include <fstream>
#include <string>

namespace qf {

IoCounters read_io_counters() {
  IoCounters c;
  std::ifstream in("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  int n_found = 0;
  while (in >> key >> value) {
    if (key == "rchar:") c.calls_read = value, ++n_found;
    if (key == "wchar:") c.calls_write = value, ++n_found;
    if (key == "read_bytes:") c.disk_read = value, ++n_found;
    if (key == "write_bytes:") c.disk_write = value, ++n_found;
  }
  c.available = n_found == 4;
  return c;
}

IoCounters io_since(const IoCounters& earlier, const IoCounters& later) {
  const auto diff = [](uint64_t a, uint64_t b) { return b > a ? b - a : 0; };
  IoCounters d;
  d.disk_read = diff(earlier.disk_read, later.disk_read);
  d.disk_write = diff(earlier.disk_write, later.disk_write);
  d.calls_read = diff(earlier.calls_read, later.calls_read);
  d.calls_write = diff(earlier.calls_write, later.calls_write);
  d.available = earlier.available && later.available;
  return d;
}

}  // namespace qf
