// Checksum64 (XXH64): published vectors, reference vectors from libxxhash 0.8.1 at every tail
// length class, streaming over every split, hex round trip and file checksums.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "formats/checksum.hpp"
#include "formats_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;

namespace {

// The pattern the reference vectors below were computed on: byte i = (i * 131 + 7) mod 256.
std::vector<uint8_t> pattern(size_t n_bytes) {
  std::vector<uint8_t> bytes(n_bytes);
  for (size_t i = 0; i < n_bytes; ++i) bytes[i] = static_cast<uint8_t>((i * 131 + 7) & 0xFF);
  return bytes;
}

struct Vector {
  size_t n_bytes;
  uint64_t digest;
};

// XXH64(pattern(n), n, 0) from libxxhash 0.8.1 (Debian libxxhash0) through ctypes.
const Vector kPatternVectors[] = {
    {0, 0xef46db3751d8e999ull},       {1, 0xa96c7f0ce858bbb7ull},    {3, 0xbed43740ee6332bbull},
    {4, 0xfa212ae44b3bb23dull},       {7, 0x2744460dd675d2c0ull},    {8, 0x994b676b71ce94ddull},
    {9, 0x572b84c18b983af8ull},       {15, 0x09e6451ed2ff8b1dull},   {16, 0x94ad0095e72b24d5ull},
    {31, 0x6711d55e306b5d8full},      {32, 0x07f7b8e3bc5d6e25ull},   {33, 0x09f85eeb4e1cbe9full},
    {63, 0xb7c9968c066cb6a5ull},      {64, 0x50d4159a0411632eull},   {65, 0xd277176bff863efcull},
    {100, 0x9ddada11d3dc2d8full},     {1000, 0x0bf0bdbcc82eb373ull}, {4099, 0xc2c15a86d6a1985bull},
    {1048576, 0x1b13a8085220794bull},
};

uint64_t of_text(const std::string& text) { return checksum64(text.data(), text.size()); }

}  // namespace

TEST_CASE("checksum64 matches published XXH64 vectors", "[checksum]") {
  CHECK(of_text("") == 0xef46db3751d8e999ull);
  CHECK(of_text("a") == 0xd24ec4f1a98c6e5bull);
  CHECK(of_text("abc") == 0x44bc2cf5ad770999ull);
  CHECK(of_text("message digest") == 0x066ed728fceeb3beull);
  CHECK(of_text("abcdefghijklmnopqrstuvwxyz") == 0xcfe1f278fa89835cull);
  CHECK(of_text("The quick brown fox jumps over the lazy dog") == 0x0b242d361fda71bcull);
  std::string digits;
  for (int i = 0; i < 8; ++i) digits += "1234567890";
  CHECK(of_text(digits) == 0xe04a477f19ee145dull);
}

TEST_CASE("checksum64 matches libxxhash at every tail length class", "[checksum]") {
  for (const Vector& vector : kPatternVectors) {
    INFO("n_bytes " << vector.n_bytes);
    const std::vector<uint8_t> bytes = pattern(vector.n_bytes);
    CHECK(checksum64(bytes.data(), bytes.size()) == vector.digest);
  }
}

TEST_CASE("streaming gives the one-shot digest for every split", "[checksum]") {
  const std::vector<uint8_t> bytes = pattern(100);
  const uint64_t expected = 0x9ddada11d3dc2d8full;
  for (size_t first = 0; first <= bytes.size(); ++first) {
    for (size_t second = first; second <= bytes.size(); second += 7) {
      Checksum64 sum;
      sum.update(bytes.data(), first);
      sum.update(bytes.data() + first, second - first);
      sum.update(bytes.data() + second, bytes.size() - second);
      INFO("split at " << first << " and " << second);
      REQUIRE(sum.digest() == expected);
    }
  }

  SECTION("random piece sizes over 1 MiB, digest() midway does not disturb the state") {
    const std::vector<uint8_t> big = pattern(1048576);
    std::mt19937 rng(1234);
    Checksum64 sum;
    size_t done = 0;
    while (done < big.size()) {
      const size_t piece = std::min<size_t>(rng() % 5000, big.size() - done);
      sum.update(big.data() + done, piece);
      done += piece;
      (void)sum.digest();
    }
    CHECK(sum.digest() == 0x1b13a8085220794bull);
    sum.reset();
    CHECK(sum.digest() == 0xef46db3751d8e999ull);
  }
}

TEST_CASE("checksum hex text round-trips and rejects malformed text", "[checksum]") {
  CHECK(checksum_hex(0xef46db3751d8e999ull) == "ef46db3751d8e999");
  CHECK(checksum_hex(0x1ull) == "0000000000000001");
  uint64_t value = 0;
  REQUIRE(parse_checksum_hex("EF46DB3751D8E999", &value));
  CHECK(value == 0xef46db3751d8e999ull);
  REQUIRE(parse_checksum_hex("0000000000000000", &value));
  CHECK(value == 0);
  const std::string bad =
      GENERATE(std::string(""), std::string("ef46db3751d8e99"), std::string("ef46db3751d8e9999"),
               std::string("ef46db3751d8e99g"), std::string("0x46db3751d8e999"));
  CHECK_FALSE(parse_checksum_hex(bad, &value));
  Checksum64 sum;
  sum.update("abc", 3);
  CHECK(sum.hex_digest() == "44bc2cf5ad770999");
}

TEST_CASE("checksum_file hashes whole files of any size", "[checksum]") {
  TempDir tmp;
  SECTION("empty file") {
    write_bytes(tmp.file("empty"), "");
    const FileChecksum sum = checksum_file(tmp.file("empty"));
    CHECK(sum.n_bytes == 0);
    CHECK(sum.digest == 0xef46db3751d8e999ull);
  }
  SECTION("a file larger than one read piece (16 MiB)") {
    const size_t n_bytes = (size_t{16} << 20) + 4099;
    std::string bytes(n_bytes, '\0');
    for (size_t i = 0; i < n_bytes; ++i) bytes[i] = static_cast<char>((i * 131 + 7) & 0xFF);
    write_bytes(tmp.file("big"), bytes);
    const FileChecksum sum = checksum_file(tmp.file("big"));
    CHECK(sum.n_bytes == n_bytes);
    CHECK(sum.digest == checksum64(bytes.data(), bytes.size()));
  }
  SECTION("a missing file is an error naming it") {
    require_error([&] { checksum_file(tmp.file("absent")); }, {tmp.file("absent")});
  }
}
