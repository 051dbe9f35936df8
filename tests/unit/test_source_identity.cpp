// Source identity (issue 18 defect 9): a stat per file tells a modified, touched-back, replaced,
// resized, added or removed source file; the rank store records it with content digests noted
// in the background; a version 1 store (no identity) resumes with a warning and is upgraded; a
// resume whose source changed is refused naming the file, unless --verify-source re-hashed it.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "catch_compat.hpp"
#include "error_test_util.hpp"
#include "formats/checksum.hpp"
#include "formats/rank_store.hpp"
#include "formats/safetensors_reader.hpp"
#include "formats/shard_digest.hpp"
#include "formats/source_identity.hpp"
#include "formats_test_util.hpp"
#include "job/source_check.hpp"
#include "rank_store_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;
using qf::test::contains;
using qf::test::error_of;
namespace fs = std::filesystem;

namespace {

// A later mtime than the file has (file systems with coarse clocks would give the same one).
void write_later(const std::string& path, const std::string& bytes) {
  struct stat before {};
  REQUIRE(::stat(path.c_str(), &before) == 0);
  write_bytes(path, bytes);
  const auto later = fs::last_write_time(path) + std::chrono::seconds(1);
  fs::last_write_time(path, later);
}

std::string joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  return text;
}

}  // namespace

TEST_CASE("changed_source_files: what a stat tells", "[source_identity]") {
  TempDir tmp;
  write_bytes(tmp.file("a"), "aaaa");
  write_bytes(tmp.file("b"), "bbbb");
  const SourceIdentity start = stat_source_files(tmp.path(), {"b", "a"});
  REQUIRE(start.size() == 2);
  CHECK(start[0].name == "a");  // sorted
  CHECK(changed_source_files(start, stat_source_files(tmp.path(), {"a", "b"})).empty());
  SECTION("same size, new bytes: modified") {
    write_later(tmp.file("a"), "AAAA");
    const auto lines = changed_source_files(start, stat_source_files(tmp.path(), {"a", "b"}));
    REQUIRE(lines.size() == 1);
    CHECK(contains(lines[0], "a: modified (mtime "));
  }
  SECTION("bytes changed, mtime set back: the ctime tells") {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto mtime = fs::last_write_time(tmp.file("a"));
    write_bytes(tmp.file("a"), "AAAA");
    fs::last_write_time(tmp.file("a"), mtime);
    CHECK(contains(joined(changed_source_files(start, stat_source_files(tmp.path(), {"a", "b"}))),
                   "a: changed with its mtime kept or restored (ctime "));
  }
  SECTION("replaced by a copy: another inode") {
    fs::copy_file(tmp.file("a"), tmp.file("a2"));
    fs::rename(tmp.file("a2"), tmp.file("a"));
    CHECK(contains(joined(changed_source_files(start, stat_source_files(tmp.path(), {"a", "b"}))),
                   "replaced by another file (inode "));
  }
  SECTION("resized, new and gone files") {
    write_later(tmp.file("b"), "bbbbb");
    write_bytes(tmp.file("c"), "c");
    const std::string text =
        joined(changed_source_files(start, stat_source_files(tmp.path(), {"b", "c"})));
    CHECK(contains(text, "a: gone"));
    CHECK(contains(text, "b: size 4 -> 5 bytes"));
    CHECK(contains(text, "c: new"));
  }
  CHECK(contains(error_of([&] { stat_source_files(tmp.path(), {"missing"}); }), "is missing"));
}

TEST_CASE("source identity JSON round trip; the hasher gives the file checksums",
          "[source_identity]") {
  TempDir tmp;
  write_bytes(tmp.file("a"), std::string(100000, 'x'));
  write_bytes(tmp.file("b"), "b");
  SourceIdentity identity = stat_source_files(tmp.path(), {"a", "b"});
  identity[1].xxh64 = "0123456789abcdef";
  const SourceIdentity back =
      source_identity_from_json(source_identity_to_json(identity), "manifest");
  REQUIRE(back.size() == 2);
  CHECK(back[0].xxh64.empty());
  CHECK(back[1].xxh64 == "0123456789abcdef");
  identity[0].xxh64 = tensor_list_digest_text(0xfedcba9876543210ull);  // the tensor-list kind
  const nlohmann::json document = source_identity_to_json(identity);
  CHECK(document["files"][0]["tensors_xxh64"] == "fedcba9876543210");
  CHECK_FALSE(document["files"][0].contains("xxh64"));
  CHECK(source_identity_from_json(document, "m")[0].xxh64 == "tensors:fedcba9876543210");
  CHECK(back[0].inode == identity[0].inode);
  CHECK(back[0].ctime_ns == identity[0].ctime_ns);
  CHECK(contains(error_of([&] { source_identity_from_json(nlohmann::json::array(), "m"); }),
                 "m: source identity must be an object"));
  std::map<std::string, std::string> digests;
  std::mutex mutex;
  {
    SourceHasher hasher({"a", "b"}, {tmp.file("a"), tmp.file("b")},
                        [&](const std::string& name, const std::string& digest) {
                          std::lock_guard<std::mutex> lock(mutex);
                          digests[name] = digest;
                        });
    hasher.wait();
  }
  CHECK(digests.at("a") == checksum_hex(checksum_file(tmp.file("a")).digest));
  CHECK(digests.at("b") == checksum_hex(checksum_file(tmp.file("b")).digest));
}

TEST_CASE("source digests from the job's reads equal a fresh pass over the file (issue 19)",
          "[source_identity]") {
  TempDir tmp;
  // Three tensors, one empty (nobody reads it: its digest is known from the start).
  const std::string json = R"({"a":{"dtype":"U8","shape":[5],"data_offsets":[0,5]},)"
                           R"("empty":{"dtype":"U8","shape":[0],"data_offsets":[5,5]},)"
                           R"("b":{"dtype":"U8","shape":[3],"data_offsets":[5,8]}})";
  const std::string path = tmp.file("model.safetensors");
  write_bytes(path, raw_safetensors(json, "abcdeXYZ"));
  const std::string fresh = source_file_digest(path);
  CHECK(fresh == tensor_list_digest_text(shard_digest_of_file(path)));
  CHECK(fresh.rfind(kTensorListDigest, 0) == 0);
  // A digest recorded whole-file (an earlier version's store) is recomputed whole-file.
  CHECK(source_file_digest(path, "0123456789abcdef") == checksum_hex(checksum_file(path).digest));
  CHECK(source_file_digest(path, fresh) == fresh);

  const SafetensorsReader reader(path);
  uint64_t digest = 0;
  CHECK(reader.header_digest() == checksum_range(open_for_read(path), 0, reader.data_offset()));
  std::vector<uint8_t> bytes(5);
  reader.read(reader.at("a"), 0, 5, bytes.data());  // not recording yet
  CHECK_FALSE(reader.known_digest(reader.at("a"), &digest));
  reader.digest_whole_reads(true);
  reader.read(reader.at("a"), 1, 4, bytes.data());  // part of a tensor: no digest
  CHECK_FALSE(reader.known_digest(reader.at("a"), &digest));
  reader.read(reader.at("a"), 0, 5, bytes.data());
  REQUIRE(reader.known_digest(reader.at("a"), &digest));
  CHECK(digest == checksum64("abcde", 5));
  CHECK_FALSE(reader.content_digest(&digest));  // "b" not read yet
  SECTION("every tensor read") { (void)reader.read_tensor(reader.at("b")); }
  SECTION("the last one noted by a copy") {
    reader.note_digest(reader.at("b"), checksum64("XYZ", 3));
  }
  REQUIRE(reader.content_digest(&digest));
  CHECK(tensor_list_digest_text(digest) == fresh);
}

TEST_CASE("rank store: identity recorded, noted digests merged, version 1 stores upgraded",
          "[source_identity][rank_store]") {
  TempDir tmp, src;
  write_bytes(src.file("model.safetensors"), "weights");
  write_bytes(src.file("config.json"), "{}");
  const std::vector<std::string> files = {"config.json", "model.safetensors"};
  {
    RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
    CHECK(store.source_identity().is_null());
    CHECK(store.manifest_format_version() == 2);
    pipeline::check_and_record_source(store, stat_source_files(src.path(), files), nullptr);
    store.note_source_digests({{"config.json", "00000000000000aa"}});
    store.commit_layer(make_layer_record(0, kStageCalib), kStageCalib);  // writes the noted one
  }
  {
    const RankStore reopened = RankStore::open(tmp.path(), 0);
    const SourceIdentity recorded =
        source_identity_from_json(reopened.source_identity(), "manifest");
    CHECK(recorded[0].xxh64 == "00000000000000aa");
    CHECK(recorded[1].xxh64.empty());
  }
  SECTION("a changed source refuses the resume, naming the file; the store is untouched") {
    write_later(src.file("model.safetensors"), "WEIGHTS");
    RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
    const std::string message = error_of([&] {
      pipeline::check_and_record_source(store, stat_source_files(src.path(), files), nullptr);
    });
    CHECK(contains(message, "the source checkpoint changed since this store's run recorded it"));
    CHECK(contains(message, "model.safetensors: modified"));
    CHECK(contains(message, "--verify-source"));
    // verified contents that match nothing recorded for that file cannot prove it unchanged
    pipeline::SourceDigests verified;
    verified.digests = {{"model.safetensors", "1111111111111111"}};
    CHECK(contains(error_of([&] {
                     pipeline::check_and_record_source(store, stat_source_files(src.path(), files),
                                                       &verified);
                   }),
                   "have no content digest in the store"));
    verified.matched_recorded = {"model.safetensors"};
    pipeline::check_and_record_source(store, stat_source_files(src.path(), files), &verified);
    CHECK(source_identity_from_json(store.source_identity(), "m")[1].xxh64 == "1111111111111111");
  }
  SECTION("a version 1 manifest (no identity) resumes and is upgraded") {
    const std::string path = RankStore::rank_dir(tmp.path(), 0) + "/manifest.json";
    nlohmann::json doc = nlohmann::json::parse(qf::formats::test::read_bytes(path));
    doc.erase("source");
    doc.erase("manifest_xxh64");
    doc["format_version"] = 1;
    const std::string compact = doc.dump();
    doc["manifest_xxh64"] = checksum_hex(checksum64(compact.data(), compact.size()));
    write_bytes(path, doc.dump(2));
    RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
    CHECK(store.manifest_format_version() == 1);
    CHECK(store.source_identity().is_null());
    CHECK(store.committed_layers(kStageCalib) == std::vector<int>{0});
    pipeline::check_and_record_source(store, stat_source_files(src.path(), files), nullptr);
    const RankStore reopened = RankStore::open(tmp.path(), 0);
    CHECK(reopened.manifest_format_version() == 2);
    CHECK(source_identity_from_json(reopened.source_identity(), "m").size() == 2);
  }
}
