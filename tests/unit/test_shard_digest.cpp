// formats/shard_digest: the version-2 shard digest computed from the file equals the one combined
// from per-tensor digests taken while writing (in any write order); one changed byte anywhere
// (header or tensor) changes it; manifests of both versions parse, bad entries are listed, an
// unknown format is refused naming the file.
#include <map>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "formats/checksum.hpp"
#include "formats/posix_file.hpp"
#include "formats/safetensors_writer.hpp"
#include "formats/shard_digest.hpp"
#include "formats/staged_output.hpp"
#include "formats_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using qf::formats::test::TempDir;

namespace {

struct Written {
  std::string path;
  uint64_t digest_from_parts = 0;
};

// A shard of three tensors, pwritten in reverse order, hashed as written.
Written write_shard(const std::string& dir) {
  const std::vector<TensorSpec> specs = {{"a.weight", DType::kU8, {64, 8}},
                                         {"a.scale", DType::kF32, {3}},
                                         {"b", DType::kBF16, {5, 7}}};
  const SafetensorsLayout layout = layout_safetensors(specs);
  const std::string path = dir + "/model-00001-of-00001.safetensors";
  create_presized_shard(path, layout);
  FileDescriptor fd = open_for_pwrite(path);
  std::map<uint64_t, uint64_t> digest_at;  // file offset -> digest
  for (auto it = specs.rbegin(); it != specs.rend(); ++it) {
    std::vector<uint8_t> bytes(it->n_bytes());
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = uint8_t(i * 7 + it->name.size());
    const uint64_t offset = layout.file_offset.at(it->name);
    pwrite_full(fd, bytes.data(), bytes.size(), offset);
    digest_at[offset] = checksum64(bytes.data(), bytes.size());
  }
  fd.close();
  std::vector<uint64_t> in_order;
  for (const auto& [offset, digest] : digest_at) in_order.push_back(digest);
  return {path, combine_shard_digest(
                    checksum64(layout.header_bytes.data(), layout.header_bytes.size()), in_order)};
}

void flip_byte(const std::string& path, uint64_t offset) {
  uint8_t b = 0;
  pread_full(open_for_read(path), &b, 1, offset);
  b ^= 0x10;
  FileDescriptor fd = open_for_pwrite(path);
  pwrite_full(fd, &b, 1, offset);
  fd.close();
}

}  // namespace

TEST_CASE("the shard digest from the file equals the one from the writers' parts",
          "[shard_digest]") {
  TempDir tmp;
  const Written w = write_shard(tmp.path());
  CHECK(shard_digest_of_file(w.path) == w.digest_from_parts);
  CHECK(shard_digest_of_file(w.path) != checksum_file(w.path).digest);  // not version 1's rule
}

TEST_CASE("one changed byte in a tensor or in the header changes the shard digest",
          "[shard_digest]") {
  TempDir tmp;
  const Written w = write_shard(tmp.path());
  const uint64_t size = file_n_bytes(open_for_read(w.path));
  flip_byte(w.path, size - 1);  // last byte of the last tensor
  CHECK(shard_digest_of_file(w.path) != w.digest_from_parts);
  flip_byte(w.path, size - 1);
  CHECK(shard_digest_of_file(w.path) == w.digest_from_parts);
  // A header byte that keeps the file valid: tensor "b" renamed "c".
  const std::string header = read_file_bytes(w.path).substr(0, 256);
  const size_t at = header.find("\"b\"");
  REQUIRE(at != std::string::npos);
  FileDescriptor fd = open_for_pwrite(w.path);
  const uint8_t c = 'c';
  pwrite_full(fd, &c, 1, at + 1);
  fd.close();
  CHECK(shard_digest_of_file(w.path) != w.digest_from_parts);
}

TEST_CASE("checksums manifests of both versions parse; bad entries are listed", "[shard_digest]") {
  const auto v2 = checksums_manifest_json({{"s1.safetensors", 0x0123456789abcdefull}});
  const ChecksumsManifest m2 = parse_checksums_manifest(v2, "sums.json");
  CHECK(m2.version == 2);
  CHECK(m2.files.at("s1.safetensors") == 0x0123456789abcdefull);
  CHECK(m2.problems.empty());
  const nlohmann::json v1 = {{"s1.safetensors", "0123456789abcdef"},
                             {"../x", "0123456789abcdef"},
                             {"s2.safetensors", "123"}};
  const ChecksumsManifest m1 = parse_checksums_manifest(v1, "sums.json");
  CHECK(m1.version == 1);
  CHECK(m1.files.size() == 1);
  CHECK(m1.problems.size() == 2);
  nlohmann::json unknown = v2;
  unknown["format"] = "quantforge-checksums/9";
  try {
    parse_checksums_manifest(unknown, "OUT/sums.json");
    FAIL("an unknown format was accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("OUT/sums.json") != std::string::npos);
  }
  CHECK_THROWS_AS(parse_checksums_manifest(nlohmann::json::array(), "x"), Error);
}
