// Checksum throughput: the hand-written XXH64 quantforge used up to store format 1 (kept here,
// verbatim in its arithmetic, as the baseline) against Debian's libxxhash (XXH64 and XXH3-64,
// the SIMD variant the library was built with), on a buffer in memory and on a file read the
// way formats::checksum_file reads it (16 MiB preads), from the page cache and cold
// (posix_fadvise DONTNEED before each pass). Prints GB/s (10^9 bytes per second), best of N.
// Usage: bench_checksum [MiB, default 1024] [file directory, default /tmp] [repeats, default 3]
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "formats/checksum.hpp"

namespace {

// ---- the hand-written XXH64 of src/formats/checksum.cpp before libxxhash (format 1) ------------
namespace handwritten {
constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full,
                   kP3 = 0x165667B19E3779F9ull, kP4 = 0x85EBCA77C2B2AE63ull,
                   kP5 = 0x27D4EB2F165667C5ull;
inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t rd64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t rd32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t round(uint64_t acc, uint64_t lane) { return rotl(acc + lane * kP2, 31) * kP1; }
inline uint64_t merge(uint64_t acc, uint64_t v) { return (acc ^ round(0, v)) * kP1 + kP4; }

class Xxh64 {
 public:
  void update(const uint8_t* in, size_t n) {
    total_ += n;
    if (n_pending_ + n < 32) {
      std::memcpy(pending_ + n_pending_, in, n);
      n_pending_ += n;
      return;
    }
    if (n_pending_ > 0) {
      const size_t fill = 32 - n_pending_;
      std::memcpy(pending_ + n_pending_, in, fill);
      stripes(pending_, 32);
      in += fill;
      n -= fill;
      n_pending_ = 0;
    }
    const size_t used = stripes(in, n);
    n_pending_ = n - used;
    std::memcpy(pending_, in + used, n_pending_);
  }
  uint64_t digest() const {
    uint64_t h = total_ >= 32
                     ? rotl(acc_[0], 1) + rotl(acc_[1], 7) + rotl(acc_[2], 12) + rotl(acc_[3], 18)
                     : kP5;
    if (total_ >= 32) {
      for (const uint64_t a : acc_) h = merge(h, a);
    }
    h += total_;
    const uint8_t* p = pending_;
    size_t left = n_pending_;
    for (; left >= 8; p += 8, left -= 8) h = rotl(h ^ round(0, rd64(p)), 27) * kP1 + kP4;
    if (left >= 4) {
      h = rotl(h ^ uint64_t{rd32(p)} * kP1, 23) * kP2 + kP3;
      p += 4;
      left -= 4;
    }
    for (; left > 0; ++p, --left) h = rotl(h ^ uint64_t{*p} * kP5, 11) * kP1;
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    return h ^ (h >> 32);
  }

 private:
  size_t stripes(const uint8_t* d, size_t n) {
    size_t pos = 0;
    for (; pos + 32 <= n; pos += 32) {
      acc_[0] = round(acc_[0], rd64(d + pos));
      acc_[1] = round(acc_[1], rd64(d + pos + 8));
      acc_[2] = round(acc_[2], rd64(d + pos + 16));
      acc_[3] = round(acc_[3], rd64(d + pos + 24));
    }
    return pos;
  }
  uint64_t acc_[4] = {kP1 + kP2, kP2, 0, 0 - kP1};
  uint64_t total_ = 0;
  uint8_t pending_[32] = {};
  size_t n_pending_ = 0;
};
}  // namespace handwritten

// One hash fed chunk by chunk (what checksum_file does with its 16 MiB preads).
using Feed = std::function<void(const std::function<void(const uint8_t*, size_t)>&)>;

uint64_t hash_handwritten(const Feed& feed) {
  handwritten::Xxh64 h;
  feed([&](const uint8_t* p, size_t n) { h.update(p, n); });
  return h.digest();
}
uint64_t hash_lib_xxh64(const Feed& feed) {
  XXH64_state_t* s = XXH64_createState();
  XXH64_reset(s, 0);
  feed([&](const uint8_t* p, size_t n) { XXH64_update(s, p, n); });
  const uint64_t d = XXH64_digest(s);
  XXH64_freeState(s);
  return d;
}
uint64_t hash_lib_xxh3(const Feed& feed) {
  XXH3_state_t* s = XXH3_createState();
  XXH3_64bits_reset(s);
  feed([&](const uint8_t* p, size_t n) { XXH3_64bits_update(s, p, n); });
  const uint64_t d = XXH3_64bits_digest(s);
  XXH3_freeState(s);
  return d;
}
// What quantforge now calls (formats::Checksum64 with its default algorithm).
uint64_t hash_quantforge(const Feed& feed) {
  qf::formats::Checksum64 h;
  feed([&](const uint8_t* p, size_t n) { h.update(p, n); });
  return h.digest();
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr size_t kChunk = size_t{16} << 20;

}  // namespace

int main(int argc, char** argv) {
  const size_t n_mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1024;
  const std::string dir = argc > 2 ? argv[2] : "/tmp";
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 3;
  const size_t n_bytes = n_mib << 20;
  std::vector<uint8_t> data(n_bytes);
  std::mt19937_64 rng(1);
  for (size_t i = 0; i + 8 <= n_bytes; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&data[i], &v, 8);
  }
  const struct {
    const char* name;
    uint64_t (*fn)(const Feed&);
  } hashers[] = {{"xxh64 hand-written (format 1)", hash_handwritten},
                 {"xxh64 libxxhash", hash_lib_xxh64},
                 {"xxh3-64 libxxhash", hash_lib_xxh3},
                 {"formats::Checksum64 (default)", hash_quantforge}};

  std::printf("libxxhash %u.%u.%u, %zu MiB, best of %d\n", XXH_VERSION_MAJOR, XXH_VERSION_MINOR,
              XXH_VERSION_RELEASE, n_mib, repeats);
  std::printf("%-32s %-22s %10s  %s\n", "hash", "input", "GB/s", "digest");
  const Feed memory_one = [&](const std::function<void(const uint8_t*, size_t)>& f) {
    f(data.data(), data.size());
  };
  const Feed memory_chunks = [&](const std::function<void(const uint8_t*, size_t)>& f) {
    for (size_t off = 0; off < data.size(); off += kChunk) {
      f(data.data() + off, std::min(kChunk, data.size() - off));
    }
  };
  for (const auto& h : hashers) {
    for (const auto& [what, feed] :
         {std::pair<const char*, const Feed*>{"memory, one call", &memory_one},
          std::pair<const char*, const Feed*>{"memory, 16 MiB calls", &memory_chunks}}) {
      double best = 1e30;
      uint64_t digest = 0;
      for (int r = 0; r < repeats; ++r) {
        const double t0 = now_s();
        digest = h.fn(*feed);
        best = std::min(best, now_s() - t0);
      }
      std::printf("%-32s %-22s %10.2f  %016llx\n", h.name, what, n_bytes / best / 1e9,
                  static_cast<unsigned long long>(digest));
    }
  }

  // The same bytes as a file, read in 16 MiB preads into one reused buffer.
  const std::string path = dir + "/bench_checksum." + std::to_string(::getpid());
  {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
      std::perror(path.c_str());
      return 1;
    }
    for (size_t off = 0; off < n_bytes;) {
      const ssize_t w = ::write(fd, data.data() + off, std::min(kChunk, n_bytes - off));
      if (w <= 0) {
        std::perror("write");
        return 1;
      }
      off += static_cast<size_t>(w);
    }
    ::fsync(fd);
    ::close(fd);
  }
  std::vector<uint8_t>().swap(data);  // the file pass must not find the bytes in this buffer
  std::vector<uint8_t> buffer(kChunk);
  const int fd = ::open(path.c_str(), O_RDONLY);
  const Feed file_feed = [&](const std::function<void(const uint8_t*, size_t)>& f) {
    for (size_t off = 0; off < n_bytes; off += kChunk) {
      const size_t n = std::min(kChunk, n_bytes - off);
      size_t got = 0;
      while (got < n) {
        const ssize_t r = ::pread(fd, buffer.data() + got, n - got, off + got);
        if (r <= 0) std::abort();
        got += static_cast<size_t>(r);
      }
      f(buffer.data(), n);
    }
  };
  const auto read_only = [](const Feed& feed) {
    uint64_t x = 0;
    feed([&](const uint8_t* p, size_t n) { x += p[n - 1]; });
    return x;
  };
  struct FileRow {
    const char* name;
    std::function<uint64_t(const Feed&)> fn;
  };
  std::vector<FileRow> rows = {{"read only (pread, no hash)", read_only}};
  for (const auto& h : hashers) rows.push_back({h.name, h.fn});
  for (const bool cold : {false, true}) {
    for (const FileRow& row : rows) {
      double best = 1e30;
      uint64_t digest = 0;
      for (int r = 0; r < repeats; ++r) {
        if (cold) {
          ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        } else {
          file_feed([](const uint8_t*, size_t) {});  // warm the page cache
        }
        const double t0 = now_s();
        digest = row.fn(file_feed);
        best = std::min(best, now_s() - t0);
      }
      std::printf("%-32s %-22s %10.2f  %016llx\n", row.name,
                  cold ? "file, cold (fadvise)" : "file, page cache", n_bytes / best / 1e9,
                  static_cast<unsigned long long>(digest));
    }
  }
  ::close(fd);
  ::unlink(path.c_str());
  return 0;
}
