// Fuzz target: model.safetensors.index.json text through ShardIndex::read.
#include "formats/shard_index.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qf::fuzz::write_input(data, size, ".index.json");
  qf::fuzz::expect_ok_or_error([&] {
    const auto index = qf::formats::ShardIndex::read(path);
    (void)index.shard_files();
  });
  return 0;
}
