// XXH64 in plain C++ (little-endian reads via memcpy, no intrinsics), streaming and one-shot,
// plus file checksums. The constants and round structure follow doc/xxhash_spec.md.
#include "formats/checksum.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/check.hpp"

namespace qf::formats {
namespace {

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ull;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ull;
constexpr uint64_t kSeed = 0;
constexpr size_t kStripeBytes = 32;
// checksum_file reads this much per pread.
constexpr uint64_t kFileChunkBytes = uint64_t{16} << 20;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// The spec defines every multi-byte read as little-endian.
inline uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}
inline uint32_t read_u32_le(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  return v;
}

inline uint64_t round(uint64_t acc, uint64_t lane) {
  acc += lane * kPrime2;
  acc = rotl(acc, 31);
  return acc * kPrime1;
}

inline uint64_t merge_round(uint64_t acc, uint64_t value) {
  acc ^= round(0, value);
  return acc * kPrime1 + kPrime4;
}

// Folds whole 32-byte stripes into acc; returns the number of bytes consumed.
size_t consume_stripes(uint64_t acc[4], const uint8_t* data, size_t n_bytes) {
  size_t pos = 0;
  for (; pos + kStripeBytes <= n_bytes; pos += kStripeBytes) {
    acc[0] = round(acc[0], read_u64_le(data + pos));
    acc[1] = round(acc[1], read_u64_le(data + pos + 8));
    acc[2] = round(acc[2], read_u64_le(data + pos + 16));
    acc[3] = round(acc[3], read_u64_le(data + pos + 24));
  }
  return pos;
}

}  // namespace

// ---- Checksum64 --------------------------------------------------------------------------------

void Checksum64::reset() {
  acc_[0] = kSeed + kPrime1 + kPrime2;
  acc_[1] = kSeed + kPrime2;
  acc_[2] = kSeed;
  acc_[3] = kSeed - kPrime1;
  n_bytes_total_ = 0;
  n_pending_ = 0;
}

void Checksum64::update(const void* data, size_t n_bytes) {
  const auto* in = static_cast<const uint8_t*>(data);
  n_bytes_total_ += n_bytes;
  if (n_pending_ + n_bytes < kStripeBytes) {
    if (n_bytes > 0) std::memcpy(pending_ + n_pending_, in, n_bytes);
    n_pending_ += n_bytes;
    return;
  }
  if (n_pending_ > 0) {  // complete the pending stripe first
    const size_t fill = kStripeBytes - n_pending_;
    std::memcpy(pending_ + n_pending_, in, fill);
    consume_stripes(acc_, pending_, kStripeBytes);
    in += fill;
    n_bytes -= fill;
    n_pending_ = 0;
  }
  const size_t used = consume_stripes(acc_, in, n_bytes);
  n_pending_ = n_bytes - used;
  if (n_pending_ > 0) std::memcpy(pending_, in + used, n_pending_);
}

uint64_t Checksum64::digest() const {
  uint64_t h = 0;
  if (n_bytes_total_ >= kStripeBytes) {
    h = rotl(acc_[0], 1) + rotl(acc_[1], 7) + rotl(acc_[2], 12) + rotl(acc_[3], 18);
    for (const uint64_t acc : acc_) h = merge_round(h, acc);
  } else {
    h = kSeed + kPrime5;
  }
  h += n_bytes_total_;

  // The tail: the pending bytes, 8 then 4 then 1 at a time.
  const uint8_t* p = pending_;
  size_t left = n_pending_;
  for (; left >= 8; p += 8, left -= 8) {
    h ^= round(0, read_u64_le(p));
    h = rotl(h, 27) * kPrime1 + kPrime4;
  }
  if (left >= 4) {
    h ^= uint64_t{read_u32_le(p)} * kPrime1;
    h = rotl(h, 23) * kPrime2 + kPrime3;
    p += 4;
    left -= 4;
  }
  for (; left > 0; ++p, --left) {
    h ^= uint64_t{*p} * kPrime5;
    h = rotl(h, 11) * kPrime1;
  }

  // Avalanche.
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

std::string Checksum64::hex_digest() const { return checksum_hex(digest()); }

uint64_t checksum64(const void* data, size_t n_bytes) {
  Checksum64 sum;
  sum.update(data, n_bytes);
  return sum.digest();
}

// ---- hex ---------------------------------------------------------------------------------------

std::string checksum_hex(uint64_t digest) {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex(16, '0');
  for (int i = 15; i >= 0; --i, digest >>= 4) hex[i] = kDigits[digest & 0xF];
  return hex;
}

bool parse_checksum_hex(const std::string& hex, uint64_t* out) {
  if (hex.size() != 16) return false;
  uint64_t value = 0;
  for (const char c : hex) {
    int nibble = -1;
    if (c >= '0' && c <= '9') nibble = c - '0';
    if (c >= 'a' && c <= 'f') nibble = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') nibble = c - 'A' + 10;
    if (nibble < 0) return false;
    value = (value << 4) | static_cast<uint64_t>(nibble);
  }
  *out = value;
  return true;
}

// ---- files -------------------------------------------------------------------------------------

bool checksum_range(const FileDescriptor& fd, uint64_t offset, uint64_t n_bytes,
                    const std::atomic<bool>* stop, uint64_t* digest) {
  std::vector<uint8_t> buffer(std::min(n_bytes, kFileChunkBytes));
  Checksum64 sum;
  for (uint64_t done = 0; done < n_bytes; done += buffer.size()) {
    if (stop != nullptr && stop->load()) return false;
    const uint64_t n = std::min<uint64_t>(buffer.size(), n_bytes - done);
    pread_full(fd, buffer.data(), n, offset + done);
    sum.update(buffer.data(), n);
  }
  *digest = sum.digest();
  return true;
}

uint64_t checksum_range(const FileDescriptor& fd, uint64_t offset, uint64_t n_bytes) {
  uint64_t digest = 0;
  checksum_range(fd, offset, n_bytes, nullptr, &digest);
  return digest;
}

FileChecksum checksum_file(const FileDescriptor& fd) {
  FileChecksum result;
  result.n_bytes = file_n_bytes(fd);
  result.digest = checksum_range(fd, 0, result.n_bytes);
  return result;
}

FileChecksum checksum_file(const std::string& path) { return checksum_file(open_for_read(path)); }

}  // namespace qf::formats
