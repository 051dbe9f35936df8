// RankStore: byte-exact round trips of every dtype, layers and stages, resume and provenance
// checks, and every simulated crash or corruption (temp files, unlisted layer files, truncated
// or flipped files, damaged manifests) ending in a clear error or a clean resume.
#include <filesystem>
#include <limits>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "core/strings.hpp"
#include "formats/layer_file.hpp"
#include "formats/rank_store.hpp"
#include "formats/tensor_spec.hpp"
#include "formats_test_util.hpp"
#include "rank_store_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;
using nlohmann::json;

namespace {

std::string layer_path(const TempDir& tmp, int rank, int layer, const std::string& stage) {
  return RankStore::rank_dir(tmp.path(), rank) + "/" + layer_file_name(layer, stage);
}

}  // namespace

TEST_CASE("every dtype round-trips byte-exactly, 0-d and empty tensors included", "[rank_store]") {
  TempDir tmp;
  const DType dtype = GENERATE(from_range(all_dtypes()));
  INFO("dtype " << dtype_name(dtype));
  LayerRecord record;
  record.layer = 7;
  const bool whole_bytes_per_elem = dtype_traits(dtype).n_bits % 8 == 0;
  uint64_t seed = 1;
  for (const std::vector<int64_t>& shape :
       std::vector<std::vector<int64_t>>{{}, {0}, {4, 0, 3}, {6}, {3, 8}, {2, 2, 4}}) {
    const uint64_t n_elems = shape_n_elems(shape, "test");
    if (!whole_bytes_per_elem && n_elems % 2 != 0) continue;  // F4: whole bytes only
    const std::string name = "t" + std::to_string(record.tensors.size()) + "." + dtype_name(dtype);
    record.tensors.push_back(
        make_tensor(name, dtype, shape, dtype_n_bytes(dtype, n_elems), seed++));
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  record.f32["amax"] = {0.0f, -0.0f, 1.5f, inf, -inf, nan, 1e-45f};
  record.f32["empty"] = {};
  record.i64["counts"] = {std::numeric_limits<int64_t>::min(), -1, 0,
                          std::numeric_limits<int64_t>::max()};
  record.i64["none"] = {};
  record.attrs["empty"] = "";
  record.attrs["unicode"] = "r\xC3\xA9sum\xC3\xA9 \xE2\x9C\x93";
  record.attrs["large"] = std::string(200000, 'x');  // past HDF5's 64 KiB compact-header limit

  {
    RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
    store.commit_layer(record, kStageQuant);
    CHECK(store.read_layer(7, kStageQuant) == record);
  }
  const RankStore reopened = RankStore::open(tmp.path(), 0);
  const LayerRecord back = reopened.read_layer(7, kStageQuant);
  CHECK(back == record);
  REQUIRE(back.tensors.size() == record.tensors.size());
  for (size_t i = 0; i < back.tensors.size(); ++i)
    CHECK(back.tensors[i].name == record.tensors[i].name);
}

TEST_CASE("layers and stages commit independently and survive re-opening", "[rank_store]") {
  TempDir tmp;
  // Calibration results alone: no tensors, only amax and token counts.
  LayerRecord calib_only;
  calib_only.layer = 9;
  calib_only.f32["layers.9.attn.wq.input_amax"] = {2.5f};
  calib_only.i64["expert_tokens"] = {0, 3, 0, 12};
  {
    RankStore store = RankStore::create(tmp.path(), 1, 2, make_provenance());
    CHECK(store.writable());
    CHECK(store.committed_layers(kStageCalib).empty());
    for (const int layer : {2, 0, 1})
      store.commit_layer(make_layer_record(layer, kStageCalib), kStageCalib);
    store.commit_layer(make_layer_record(0, kStageQuant), kStageQuant);
    store.commit_layer(calib_only, kStageCalib);
    CHECK(store.committed_layers(kStageCalib) == std::vector<int>{0, 1, 2, 9});
    CHECK(store.committed_layers(kStageQuant) == std::vector<int>{0});
    CHECK(store.has_layer(1, kStageCalib));
    CHECK_FALSE(store.has_layer(1, kStageQuant));
    CHECK(store.files().size() == 5);
  }
  const RankStore store = RankStore::open(tmp.path(), 1);
  CHECK_FALSE(store.writable());
  CHECK(store.rank() == 1);
  CHECK(store.world_size() == 2);
  CHECK(store.provenance() == make_provenance());
  CHECK(store.committed_layers(kStageCalib) == std::vector<int>{0, 1, 2, 9});
  CHECK(store.committed_layers(kStageQuant) == std::vector<int>{0});
  for (const int layer : {0, 1, 2}) {
    CHECK(store.read_layer(layer, kStageCalib) == make_layer_record(layer, kStageCalib));
  }
  CHECK(store.read_layer(0, kStageQuant) == make_layer_record(0, kStageQuant));
  CHECK(store.verify_files().empty());
  CHECK(store.read_layer(9, kStageCalib) == calib_only);
  require_error([&] { store.read_layer(1, kStageQuant); },
                {"layer 1 stage quant", "not committed"});
  CHECK(file_exists(layer_path(tmp, 1, 2, "calib")));
  CHECK(file_exists(RankStore::rank_dir(tmp.path(), 1) + "/manifest.json"));
}

TEST_CASE("any rank's store can be read by anyone; equal records give equal bytes",
          "[rank_store]") {
  TempDir tmp;
  for (int rank = 0; rank < 2; ++rank) {
    RankStore store = RankStore::create(tmp.path(), rank, 2, make_provenance());
    store.commit_layer(make_layer_record(3, kStageQuant), kStageQuant);
  }
  const RankStore store0 = RankStore::open(tmp.path(), 0);
  const RankStore store1 = RankStore::open(tmp.path(), 1);
  CHECK(store0.read_layer(3, kStageQuant) == store1.read_layer(3, kStageQuant));
  // Only the header's rank attribute differs; the same record on the same rank is identical.
  TempDir other;
  RankStore again = RankStore::create(other.path(), 0, 2, make_provenance());
  again.commit_layer(make_layer_record(3, kStageQuant), kStageQuant);
  CHECK(read_bytes(layer_path(tmp, 0, 3, "quant")) == read_bytes(layer_path(other, 0, 3, "quant")));
}

TEST_CASE("commits are refused for bad records, stages, duplicates and read-only stores",
          "[rank_store]") {
  TempDir tmp;
  RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
  LayerRecord record = make_layer_record(0, kStageQuant);
  store.commit_layer(record, kStageQuant);
  require_error([&] { store.commit_layer(record, kStageQuant); }, {"already committed"});
  require_error([&] { store.commit_layer(record, "Quant"); }, {"invalid rank-store stage"});
  require_error([&] { store.commit_layer(record, "../x"); }, {"invalid rank-store stage"});

  LayerRecord bad = make_layer_record(1, kStageQuant);
  SECTION("byte count disagrees with dtype and shape") {
    bad.tensors[0].bytes.pop_back();
    require_error([&] { store.commit_layer(bad, kStageQuant); }, {bad.tensors[0].name, "needs"});
  }
  SECTION("duplicate tensor names") {
    bad.tensors[1].name = bad.tensors[0].name;
    require_error([&] { store.commit_layer(bad, kStageQuant); }, {"duplicate tensor"});
  }
  SECTION("names HDF5 cannot hold") {
    bad.tensors[0].name = "a/b";
    require_error([&] { store.commit_layer(bad, kStageQuant); }, {"a/b", "'/'"});
    bad.tensors[0].name = ".";
    require_error([&] { store.commit_layer(bad, kStageQuant); }, {"reserved"});
  }
  SECTION("an odd number of F4 elements") {
    bad.tensors[0] = StoredTensor{"f4", DType::kF4, {3}, {0, 0}};
    require_error([&] { store.commit_layer(bad, kStageQuant); }, {"f4"});
  }
  SECTION("NUL in an attribute, negative layer") {
    bad.attrs["k"] = std::string("a\0b", 3);
    require_error([&] { store.commit_layer(bad, kStageQuant); }, {"NUL"});
    bad.attrs.erase("k");
    bad.layer = -1;
    require_error([&] { store.commit_layer(bad, kStageQuant); }, {"negative"});
  }
  // Nothing of the refused commits is left behind.
  CHECK(store.committed_layers(kStageQuant) == std::vector<int>{0});
  for (const auto& entry : std::filesystem::directory_iterator(store.dir())) {
    CHECK(entry.path().filename().string().find(".tmp.") == std::string::npos);
  }
  RankStore reader = RankStore::open(tmp.path(), 0);
  require_error([&] { reader.commit_layer(bad, kStageQuant); }, {"read-only"});
}

TEST_CASE("resume: same provenance continues, a different run is refused with every difference",
          "[rank_store]") {
  TempDir tmp;
  {
    RankStore store = RankStore::create(tmp.path(), 0, 2, make_provenance());
    store.commit_layer(make_layer_record(0, kStageCalib), kStageCalib);
  }
  SECTION("same provenance resumes with the committed layers") {
    RankStore store = RankStore::create(tmp.path(), 0, 2, make_provenance());
    CHECK(store.committed_layers(kStageCalib) == std::vector<int>{0});
    store.commit_layer(make_layer_record(1, kStageCalib), kStageCalib);
    CHECK(RankStore::open(tmp.path(), 0).committed_layers(kStageCalib) == std::vector<int>{0, 1});
  }
  SECTION("different options, sources and world size are all listed") {
    json changed = make_provenance(256);
    changed["source_files"][1]["xxh64"] = "cc";
    changed["kv_cache"] = "fp8_cast";
    require_error(
        [&] { RankStore::create(tmp.path(), 0, 4, changed); },
        {"different run", "4 difference(s)", "world_size: 2 vs 4", "options.samples: 128 vs 256",
         "source_files[model-00002-of-00002.safetensors].xxh64: \"bb\" vs \"cc\"",
         "kv_cache: (absent) vs \"fp8_cast\""});
    // The refused store is untouched.
    CHECK(RankStore::open(tmp.path(), 0).read_layer(0, kStageCalib) ==
          make_layer_record(0, kStageCalib));
  }
  SECTION("a second live writer is refused") {
    RankStore first = RankStore::create(tmp.path(), 0, 2, make_provenance());
    require_error([&] { RankStore::create(tmp.path(), 0, 2, make_provenance()); },
                  {"another live process", "writer.lock"});
  }
  SECTION("a rank directory copied to another rank is detected") {
    std::filesystem::copy(RankStore::rank_dir(tmp.path(), 0), RankStore::rank_dir(tmp.path(), 1));
    require_error([&] { RankStore::open(tmp.path(), 1); }, {"belongs to rank 0", "not rank 1"});
  }
}

TEST_CASE("resume: a store without committed layers is started afresh for any run",
          "[rank_store]") {
  TempDir tmp;
  { RankStore store = RankStore::create(tmp.path(), 0, 2, make_provenance()); }
  CHECK(RankStore::n_committed(tmp.path(), 0) == 0);
  CHECK(RankStore::n_committed(tmp.path(), 1) == -1);
  // A killed commit's renamed but unlisted layer file goes too.
  write_bytes(RankStore::rank_dir(tmp.path(), 0) + "/layer-0000.calib.h5", "partial");
  RankStore store = RankStore::create(tmp.path(), 0, 4, make_provenance(256));
  CHECK(store.world_size() == 4);
  CHECK(store.provenance() == make_provenance(256));
  CHECK_FALSE(file_exists(RankStore::rank_dir(tmp.path(), 0) + "/layer-0000.calib.h5"));
  store.commit_layer(make_layer_record(0, kStageCalib), kStageCalib);
  CHECK(RankStore::n_committed(tmp.path(), 0) == 1);
}

TEST_CASE("compare_provenance reports readable differences", "[rank_store]") {
  CHECK(RankStore::compare_provenance(make_provenance(), make_provenance()).empty());
  const json a = {{"x", 1}, {"list", {1, 2, 3}}, {"nested", {{"y", "a"}}}, {"gone", true}};
  const json b = {
      {"x", 1.5}, {"list", {1, 5}}, {"nested", {{"y", "b"}}}, {"long", std::string(300, 'z')}};
  const std::vector<std::string> diffs = RankStore::compare_provenance(a, b);
  REQUIRE(diffs.size() == 6);
  CHECK(diffs[0] == "gone: true vs (absent)");
  CHECK(diffs[1] == "list[1]: 2 vs 5");
  CHECK(diffs[2] == "list: 3 entries vs 2 entries");
  CHECK(starts_with(diffs[3], "long: (absent) vs \"zzz"));
  CHECK(diffs[3].find("(302 chars)") != std::string::npos);
  CHECK(diffs[4] == "nested.y: \"a\" vs \"b\"");
  CHECK(diffs[5] == "x: 1 vs 1.5");
  CHECK(RankStore::compare_provenance(json(1), json("1")) ==
        std::vector<std::string>{"(provenance): 1 vs \"1\""});
}

TEST_CASE("crash leftovers: temp files and unlisted layer files", "[rank_store]") {
  TempDir tmp;
  {
    RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
    store.commit_layer(make_layer_record(0, kStageQuant), kStageQuant);
  }
  const std::string dir = RankStore::rank_dir(tmp.path(), 0);
  const std::string temp_layer = dir + "/layer-0001.quant.h5.tmp.12345";
  const std::string temp_manifest = dir + "/manifest.json.tmp.12345";
  const std::string unlisted = dir + "/layer-0001.quant.h5";
  write_bytes(temp_layer, "half an HDF5 file");
  write_bytes(temp_manifest, "{\"format\": ");
  write_bytes(unlisted, "a layer file whose manifest update never happened");
  write_bytes(dir + "/notes.txt", "unrelated files are left alone");

  // A reader changes nothing (the writer may be alive) and sees only committed layers.
  const RankStore reader = RankStore::open(tmp.path(), 0);
  CHECK(reader.committed_layers(kStageQuant) == std::vector<int>{0});
  CHECK(file_exists(temp_layer));
  CHECK(file_exists(unlisted));

  // The resuming writer removes the leftovers and can commit the lost layer again.
  RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
  CHECK_FALSE(file_exists(temp_layer));
  CHECK_FALSE(file_exists(temp_manifest));
  CHECK_FALSE(file_exists(unlisted));
  CHECK(file_exists(dir + "/notes.txt"));
  store.commit_layer(make_layer_record(1, kStageQuant), kStageQuant);
  CHECK(RankStore::open(tmp.path(), 0).read_layer(1, kStageQuant) ==
        make_layer_record(1, kStageQuant));
}

TEST_CASE("damaged committed files are errors naming the file", "[rank_store]") {
  TempDir tmp;
  {
    RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
    for (const int layer : {0, 1})
      store.commit_layer(make_layer_record(layer, kStageQuant), kStageQuant);
  }
  const std::string path = layer_path(tmp, 0, 1, "quant");
  const std::string bytes = read_bytes(path);

  SECTION("truncated") {
    write_bytes(path, bytes.substr(0, bytes.size() / 2));
    require_error([&] { RankStore::open(tmp.path(), 0); }, {path, "truncated", "1 committed file"});
    require_error([&] { RankStore::create(tmp.path(), 0, 1, make_provenance()); },
                  {path, "truncated", "cannot be resumed"});
  }
  SECTION("one flipped byte") {
    flip_byte(path, static_cast<long>(bytes.size() / 2));
    require_error([&] { RankStore::open(tmp.path(), 0); }, {path, "checksum mismatch"});
    // A size-only open passes; reading the layer still verifies its checksum.
    const RankStore store = RankStore::open(tmp.path(), 0, StoreVerify::kSizes);
    CHECK(store.read_layer(0, kStageQuant) == make_layer_record(0, kStageQuant));
    require_error([&] { store.read_layer(1, kStageQuant); }, {path, "checksum mismatch"});
    REQUIRE(store.verify_files().size() == 1);
    CHECK(starts_with(store.verify_files()[0], path));
  }
  SECTION("missing") {
    std::filesystem::remove(path);
    require_error([&] { RankStore::open(tmp.path(), 0); }, {path, "missing"});
  }
  SECTION("a file that holds another layer") {
    // Swap in layer 0's file and re-sign the manifest, as a mixed-up copy would.
    const std::string manifest_path = RankStore::rank_dir(tmp.path(), 0) + "/manifest.json";
    StoreManifest manifest = manifest_from_text(read_bytes(manifest_path), manifest_path);
    write_bytes(path, read_bytes(layer_path(tmp, 0, 0, "quant")));
    manifest.files[1].n_bytes = manifest.files[0].n_bytes;
    manifest.files[1].checksum = manifest.files[0].checksum;
    write_bytes(manifest_path, manifest_to_text(manifest));
    const RankStore store = RankStore::open(tmp.path(), 0);
    require_error([&] { store.read_layer(1, kStageQuant); }, {path, "holds layer 0"});
  }
}

TEST_CASE("damaged or foreign manifests are errors naming them", "[rank_store]") {
  TempDir tmp;
  {
    RankStore::create(tmp.path(), 0, 1, make_provenance())
        .commit_layer(make_layer_record(0, kStageCalib), kStageCalib);
  }
  const std::string manifest_path = RankStore::rank_dir(tmp.path(), 0) + "/manifest.json";
  std::string text = read_bytes(manifest_path);

  SECTION("an edited value breaks the self-checksum") {
    const size_t at = text.find("\"samples\": 128");
    REQUIRE(at != std::string::npos);
    text.replace(at, 14, "\"samples\": 129");
    write_bytes(manifest_path, text);
    require_error([&] { RankStore::open(tmp.path(), 0); }, {manifest_path, "manifest checksum"});
  }
  SECTION("not JSON") {
    write_bytes(manifest_path, text.substr(0, text.size() / 2));
    require_error([&] { RankStore::open(tmp.path(), 0); }, {manifest_path, "invalid JSON"});
  }
  SECTION("a newer format version") {
    json document = json::parse(text);
    document["format_version"] = 99;
    write_bytes(manifest_path, document.dump());
    require_error([&] { RankStore::open(tmp.path(), 0); }, {manifest_path, "version 99"});
  }
  SECTION("no manifest") {
    std::filesystem::remove(manifest_path);
    require_error([&] { RankStore::open(tmp.path(), 0); }, {"manifest.json missing"});
    require_error([&] { RankStore::create(tmp.path(), 0, 1, make_provenance()); },
                  {"layer-0000.calib.h5", "no manifest.json"});
  }
  SECTION("no store at all") {
    require_error([&] { RankStore::open(tmp.path(), 5); }, {"rank-5", "directory missing"});
  }
}

TEST_CASE("layer files name their content in their header", "[rank_store]") {
  TempDir tmp;
  const LayerRecord record = make_layer_record(4, kStageCalib);
  write_layer_file(tmp.file("x.h5"), record, "calib", 3);
  LayerFileHeader header;
  CHECK(read_layer_file(tmp.file("x.h5"), &header) == record);
  CHECK(header.format_version == 1);  // no derived tensor: older builds still read it
  CHECK(header.layer == 4);
  CHECK(header.stage == "calib");
  CHECK(header.rank == 3);
  write_bytes(tmp.file("junk.h5"), "not HDF5 at all");
  require_error([&] { read_layer_file(tmp.file("junk.h5")); }, {tmp.file("junk.h5"), "HDF5"});
}

TEST_CASE("a tensor larger than one HDF5 transfer round-trips", "[rank_store][.large]") {
  TempDir tmp;
  LayerRecord record;
  record.layer = 0;
  const size_t n_bytes = (size_t{256} << 20) * 2 + 12345;
  record.tensors.push_back(
      make_tensor("big", DType::kU8, {static_cast<int64_t>(n_bytes)}, n_bytes, 9));
  RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
  store.commit_layer(record, kStageQuant);
  CHECK(store.read_layer(0, kStageQuant) == record);
}
