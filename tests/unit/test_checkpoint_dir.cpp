// CheckpointDir: index + shards cross-checked, single-file checkpoints, other files, and every
// disagreement between the index and the shard headers.
#include <filesystem>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/safetensors_writer.hpp"
#include "formats_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;

namespace {

const std::string kShard1 = "model-00001-of-00002.safetensors";
const std::string kShard2 = "model-00002-of-00002.safetensors";

void write_shard(const std::string& path, const std::vector<TensorSpec>& specs) {
  SafetensorsWriter writer(path, specs);
  for (const TensorSpec& spec : specs) {
    const std::string bytes(spec.n_bytes(), static_cast<char>(spec.name.size()));
    writer.append(bytes.data(), bytes.size());
  }
  writer.commit();
}

// Two shards, an index, a config and some side files. Returns the index for edits.
ShardIndex make_checkpoint(const TempDir& tmp) {
  write_shard(tmp.file(kShard1), {{"embed.weight", DType::kBF16, {8, 4}},
                                  {"layers.0.attn.wq", DType::kF8E4M3, {4, 4}}});
  write_shard(tmp.file(kShard2), {{"layers.0.ffn.experts.0.w1", DType::kF4, {4, 8}},
                                  {"head.weight", DType::kBF16, {8, 4}},
                                  {"norm", DType::kF32, {}}});
  ShardIndex index;
  index.metadata = {{"total_size", 64 + 16 + 16 + 64 + 4}};
  for (const char* name : {"embed.weight", "layers.0.attn.wq"}) index.weight_map[name] = kShard1;
  for (const char* name : {"layers.0.ffn.experts.0.w1", "head.weight", "norm"}) {
    index.weight_map[name] = kShard2;
  }
  index.write(tmp.file(kShardIndexFileName));
  write_bytes(tmp.file("config.json"), R"({"model_type": "deepseek_v4", "hidden_size": 4})");
  write_bytes(tmp.file("tokenizer.json"), "{}");
  std::filesystem::create_directories(tmp.file(".cache/huggingface"));
  write_bytes(tmp.file(".cache/huggingface/x.lock"), "");
  std::filesystem::create_directories(tmp.file("__pycache__"));
  write_bytes(tmp.file("__pycache__/m.pyc"), "");
  std::filesystem::create_directories(tmp.file("extra"));
  write_bytes(tmp.file("extra/notes.md"), "hi");
  return index;
}

}  // namespace

TEST_CASE("sharded checkpoint: lookup, shards, side files", "[formats]") {
  TempDir tmp;
  make_checkpoint(tmp);
  const CheckpointDir ckpt(tmp.path());
  CHECK(ckpt.dir() == tmp.path());
  CHECK(ckpt.has_index());
  CHECK(ckpt.shard_files() == std::vector<std::string>{kShard1, kShard2});
  CHECK(ckpt.tensor_names() == std::vector<std::string>{"embed.weight", "head.weight",
                                                        "layers.0.attn.wq",
                                                        "layers.0.ffn.experts.0.w1", "norm"});
  const SafetensorsReader* shard = nullptr;
  const TensorInfo& w1 = ckpt.tensor("layers.0.ffn.experts.0.w1", &shard);
  REQUIRE(shard == &ckpt.shard(kShard2));
  CHECK(w1.dtype == DType::kF4);
  CHECK(w1.n_bytes() == 16);
  CHECK(shard->read_tensor(w1) == std::vector<uint8_t>(16, 25));
  CHECK(ckpt.has_tensor("norm"));
  CHECK_FALSE(ckpt.has_tensor("nope"));
  require_error([&] { ckpt.tensor("nope"); }, {tmp.path(), "'nope'"});
  require_error([&] { ckpt.shard("model-9.safetensors"); }, {tmp.path(), "model-9.safetensors"});
  CHECK(ckpt.read_json("config.json")["model_type"] == "deepseek_v4");
  require_error([&] { ckpt.read_json("generation_config.json"); }, {"generation_config.json"});
  CHECK(ckpt.other_files() ==
        std::vector<std::string>{"config.json", "extra/notes.md", "tokenizer.json"});
  CHECK(ckpt.index().metadata["total_size"] == 164);
}

TEST_CASE("single-file checkpoint without an index", "[formats]") {
  TempDir tmp;
  write_shard(tmp.file(kSingleShardFileName), {{"a", DType::kU8, {3}}, {"b", DType::kI8, {0}}});
  write_bytes(tmp.file("config.json"), "{}");
  const CheckpointDir ckpt(tmp.path());
  CHECK_FALSE(ckpt.has_index());
  CHECK(ckpt.shard_files() == std::vector<std::string>{kSingleShardFileName});
  CHECK(ckpt.tensor_names() == std::vector<std::string>{"a", "b"});
  CHECK(ckpt.index().weight_map.at("b") == kSingleShardFileName);
  CHECK(ckpt.other_files() == std::vector<std::string>{"config.json"});
}

TEST_CASE("index and shards must agree", "[formats]") {
  TempDir tmp;
  ShardIndex index = make_checkpoint(tmp);
  const std::string index_path = tmp.file(kShardIndexFileName);

  SECTION("missing shard file") {
    index.weight_map["norm"] = "model-00003-of-00003.safetensors";
    index.write(index_path);
    require_error([&] { CheckpointDir c(tmp.path()); },
                  {tmp.path(), "shard file model-00003-of-00003.safetensors", "is missing"});
  }
  SECTION("tensor listed in the index but not in its shard") {
    index.weight_map["ghost"] = kShard1;
    index.write(index_path);
    require_error([&] { CheckpointDir c(tmp.path()); },
                  {tmp.path(), "'ghost'", "listed in", kShard1, "does not contain it"});
  }
  SECTION("tensor in a shard but not in the index") {
    index.weight_map.erase("norm");
    index.write(index_path);
    require_error([&] { CheckpointDir c(tmp.path()); },
                  {tmp.path(), "'norm'", kShard2, "is not in"});
  }
  SECTION("tensor in two shards") {
    write_shard(tmp.file(kShard1), {{"embed.weight", DType::kBF16, {8, 4}},
                                    {"layers.0.attn.wq", DType::kF8E4M3, {4, 4}},
                                    {"norm", DType::kF32, {}}});
    require_error([&] { CheckpointDir c(tmp.path()); },
                  {"'norm'", "is in shard " + kShard1, "maps it to " + kShard2});
  }
  SECTION("index maps a tensor to the wrong shard") {
    index.weight_map["norm"] = kShard1;
    index.write(index_path);
    require_error([&] { CheckpointDir c(tmp.path()); }, {"'norm'", "maps it to " + kShard1});
  }
  SECTION("empty weight_map") {
    index.weight_map.clear();
    index.write(index_path);
    require_error([&] { CheckpointDir c(tmp.path()); }, {"weight_map is empty"});
  }
  SECTION("a corrupt shard header names the shard") {
    write_bytes(tmp.file(kShard2), u64_le(2) + "{x");
    require_error([&] { CheckpointDir c(tmp.path()); }, {kShard2, "invalid JSON"});
  }
  SECTION("a corrupt index names the index") {
    write_bytes(index_path, "{\"weight_map\": 5}");
    require_error([&] { CheckpointDir c(tmp.path()); }, {index_path, "weight_map"});
  }
  SECTION("a stray .safetensors file is not an 'other file'") {
    write_shard(tmp.file("consolidated.safetensors"), {{"x", DType::kU8, {1}}});
    const CheckpointDir ckpt(tmp.path());
    CHECK(ckpt.other_files() ==
          std::vector<std::string>{"config.json", "extra/notes.md", "tokenizer.json"});
    CHECK_FALSE(ckpt.has_tensor("x"));
  }
}

TEST_CASE("not a checkpoint directory", "[formats]") {
  TempDir tmp;
  require_error([&] { CheckpointDir c(tmp.path()); },
                {tmp.path(), kShardIndexFileName, kSingleShardFileName});
  require_error([&] { CheckpointDir c(tmp.file("nope")); }, {"nope", "not a directory"});
  write_bytes(tmp.file("f"), "");
  require_error([&] { CheckpointDir c(tmp.file("f")); }, {"not a directory"});
}

TEST_CASE("symlinked shards (Hugging Face snapshot layout) are followed", "[formats]") {
  TempDir tmp;
  std::filesystem::create_directories(tmp.file("blobs"));
  std::filesystem::create_directories(tmp.file("snap"));
  write_shard(tmp.file("blobs/abc"), {{"a", DType::kU8, {2}}});
  std::filesystem::create_symlink("../blobs/abc", tmp.file("snap/model.safetensors"));
  write_bytes(tmp.file("blobs/cfg"), "{}");
  std::filesystem::create_symlink("../blobs/cfg", tmp.file("snap/config.json"));
  const CheckpointDir ckpt(tmp.file("snap"));
  CHECK(ckpt.tensor("a").n_bytes() == 2);
  CHECK(ckpt.other_files() == std::vector<std::string>{"config.json"});
}
