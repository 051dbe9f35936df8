// Checksum64: the streaming 64-bit file/record checksum (XXH64, seed 0) used by the rank store
// manifest and provenance. Owns: the hash and its hex text. Does not own: what is hashed.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "formats/posix_file.hpp"

namespace qf::formats {

// XXH64 (xxHash, 64-bit variant, Yann Collet; spec: github.com/Cyan4973/xxHash
// doc/xxhash_spec.md) with seed 0: ~10 GB/s per core, so checksumming a layer file costs
// less than reading it. Digests equal the reference xxhsum -H1 / XXH64(data, n, 0) output,
// on any byte split of the same input.
class Checksum64 {
 public:
  Checksum64() { reset(); }
  void reset();
  void update(const void* data, size_t n_bytes);
  // The digest of everything passed to update() since reset(); does not change the state,
  // so more data may follow.
  uint64_t digest() const;
  std::string hex_digest() const;  // 16 lower-case hex digits

 private:
  uint64_t acc_[4];
  uint64_t n_bytes_total_;
  uint8_t pending_[32];  // bytes not yet folded into acc_ (fewer than 32)
  size_t n_pending_;
};

// The integrity manifest an export writes into its output directory and `validate` checks
// (formats/shard_digest.hpp has its versions and digest rules).
inline constexpr const char* kChecksumsFileName = "quantforge_checksums.json";

// One-shot convenience over Checksum64.
uint64_t checksum64(const void* data, size_t n_bytes);

// 16 lower-case hex digits, most significant first ("ef46db3751d8e999").
std::string checksum_hex(uint64_t digest);
// Inverse of checksum_hex; false unless `hex` is exactly 16 hex digits (either case).
bool parse_checksum_hex(const std::string& hex, uint64_t* out);

struct FileChecksum {
  uint64_t n_bytes = 0;
  uint64_t digest = 0;
};

// Reads the whole file in large pieces; throws qf::Error naming the file.
FileChecksum checksum_file(const std::string& path);
// Same, through an already open descriptor (reads from offset 0 to the current end).
FileChecksum checksum_file(const FileDescriptor& fd);
// XXH64 of [offset, offset + n_bytes) of an open file; end-of-file before it is an error.
uint64_t checksum_range(const FileDescriptor& fd, uint64_t offset, uint64_t n_bytes);
// The same, given up when *stop (may be null) turns true between chunks: false, *digest
// untouched (a background hasher must not hold up the end of a job for a whole file).
bool checksum_range(const FileDescriptor& fd, uint64_t offset, uint64_t n_bytes,
                    const std::atomic<bool>* stop, uint64_t* digest);

}  // namespace qf::formats
