// ShardIndex (model.safetensors.index.json) and the atomic-file helpers it is built on.
#include "catch_compat.hpp"
#include "core/check.hpp"
#include "core/strings.hpp"
#include "formats/atomic_file.hpp"
#include "formats/posix_file.hpp"
#include "formats/shard_index.hpp"
#include "formats_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;

TEST_CASE("index write/read round trip", "[formats]") {
  TempDir tmp;
  const std::string path = tmp.file(kShardIndexFileName);
  ShardIndex index;
  index.weight_map = {
      {"model.embed.weight", "model-00001-of-00002.safetensors"},
      {"model.layers.0.mlp.experts.0.w1.weight", "model-00002-of-00002.safetensors"},
      {"lm_head.weight", "model-00002-of-00002.safetensors"},
      {"n\u00e4me", "model-00001-of-00002.safetensors"}};
  index.metadata = {{"total_size", 123456789012}, {"note", "x"}};
  index.write(path);
  CHECK_FALSE(file_exists(temp_path_for(path)));

  const std::string text = read_bytes(path);
  CHECK(starts_with(text, "{\n  \"metadata\": {"));  // indent 2, metadata first
  CHECK(text.back() == '\n');

  const ShardIndex back = ShardIndex::read(path);
  CHECK(back.weight_map == index.weight_map);
  CHECK(back.metadata == index.metadata);
  CHECK(back.metadata["total_size"].get<uint64_t>() == 123456789012);
  CHECK(back.shard_files() == std::vector<std::string>{"model-00001-of-00002.safetensors",
                                                       "model-00002-of-00002.safetensors"});

  // Overwrite in place: the new contents replace the old atomically.
  index.weight_map.erase("lm_head.weight");
  index.write(path);
  CHECK(ShardIndex::read(path).weight_map.count("lm_head.weight") == 0);
}

TEST_CASE("index metadata: absent or null reads as an empty object", "[formats]") {
  TempDir tmp;
  const std::string path = tmp.file("i.json");
  write_bytes(path, R"({"weight_map": {"a": "s.safetensors"}})");
  CHECK(ShardIndex::read(path).metadata == nlohmann::json::object());
  write_bytes(path, R"({"metadata": null, "weight_map": {}})");
  const ShardIndex index = ShardIndex::read(path);
  CHECK(index.metadata == nlohmann::json::object());
  CHECK(index.shard_files().empty());
}

TEST_CASE("bad index files name the file and the problem", "[formats]") {
  TempDir tmp;
  const std::string path = tmp.file("bad.json");
  const auto expect = [&](const std::string& text, const std::vector<std::string>& needles) {
    write_bytes(path, text);
    std::vector<std::string> all = needles;
    all.push_back(path);
    require_error([&] { ShardIndex::read(path); }, all);
  };
  expect("[1, 2]", {"must be a JSON object"});
  expect(R"({"metadata": {}})", {"no weight_map"});
  expect(R"({"weight_map": []})", {"weight_map must be an object"});
  expect(R"({"weight_map": {"a": 1}})", {"tensor 'a'", "must be a string"});
  expect(R"({"weight_map": {"a": "../x.safetensors"}})", {"tensor 'a'", "plain file name"});
  expect(R"({"weight_map": {"a": "/abs.safetensors"}})", {"plain file name"});
  expect(R"({"weight_map": {"a": ""}})", {"plain file name"});
  expect(R"({"weight_map": {"a": ".."}})", {"plain file name"});
  expect(R"({"weight_map": {}, "metadata": 3})", {"metadata must be an object"});
  expect(R"({"weight_map": {"a": "x", "a": "y"}})", {"duplicate key \"a\""});
  expect("{\"weight_map\": {\n  \"a\": \"x\",\n}}", {"invalid JSON", "line 3"});
  expect("", {"invalid JSON"});
  require_error([&] { ShardIndex::read(tmp.file("missing.json")); },
                {"missing.json", "cannot open"});
}

TEST_CASE("index write refuses bad contents", "[formats]") {
  TempDir tmp;
  ShardIndex index;
  index.weight_map["a"] = "sub/dir.safetensors";
  require_error([&] { index.write(tmp.file("i.json")); }, {"'a'", "plain file name"});
  index.weight_map["a"] = "ok.safetensors";
  index.metadata = nlohmann::json::array();
  require_error([&] { index.write(tmp.file("i.json")); }, {"metadata must be an object"});
  CHECK_FALSE(file_exists(tmp.file("i.json")));
  require_error([&] { index.write(tmp.file("no/dir/i.json")); }, {"no/dir/i.json"});
}

TEST_CASE("shard file names follow huggingface_hub", "[formats]") {
  CHECK(shard_file_name(1, 2) == "model-00001-of-00002.safetensors");
  CHECK(shard_file_name(163, 163) == "model-00163-of-00163.safetensors");
  CHECK_THROWS_AS(shard_file_name(0, 2), Error);
  CHECK_THROWS_AS(shard_file_name(3, 2), Error);
}

TEST_CASE("write_file_atomic and read_json_file", "[formats]") {
  TempDir tmp;
  const std::string path = tmp.file("config.json");
  write_file_atomic(path, R"({"hidden_size": 4096, "nested": {"a": [1, 2]}})");
  const nlohmann::json config = read_json_file(path);
  CHECK(config["hidden_size"] == 4096);
  CHECK(config["nested"]["a"][1] == 2);
  write_file_atomic(path, "");
  CHECK(read_bytes(path).empty());
  require_error([&] { write_file_atomic(tmp.file("nodir/x.json"), "{}"); }, {"nodir/x.json"});
  CHECK_FALSE(file_exists(tmp.file("nodir")));

  require_error([&] { parse_json_strict(R"({"a": {"b": 1, "b": 2}})", "cfg.json"); },
                {"cfg.json", "duplicate key \"b\""});
  require_error([&] { parse_json_strict(std::string("{}\0{}", 5), "nul.json"); },
                {"nul.json", "NUL byte at offset 2"});
  // Same key in different objects is fine.
  CHECK(parse_json_strict(R"({"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 3}, {"k": 4}]})", "ok")
            .size() == 3);
}
