// SourceWarmup: it asks for exactly this rank's first reads (the embedding where the rank owns
// it, then its layer-0 tensors and their scales), nothing on --resume / --export-only / --shard,
// and a source that does not open ends it quietly (the job reports the error).
#include <string>

#include "catch_compat.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats_test_util.hpp"
#include "job/source_warmup.hpp"
#include "quantize/quantize_plan.hpp"
#include "tiny_checkpoint_util.hpp"

using namespace qf;
using namespace qf::pipeline;

namespace {

// What the warm-up should ask for on `rank` of `world_size`, from the plan itself.
uint64_t first_read_bytes(const std::string& dir, int rank, int world_size) {
  const formats::CheckpointDir source(dir);
  const QuantizePlan plan = build_quantize_plan(source, Recipe::kExperts, world_size);
  uint64_t n = 0;
  for (const auto& t : plan.tensors) {
    if (plan.ownership.owner_of(t.name) != rank) continue;
    if (t.layer != 0 && t.name != "embed.weight") continue;  // the native embedding's name
    n += source.tensor(t.name).n_bytes();
    if (!t.scale_name.empty()) n += source.tensor(t.scale_name).n_bytes();
  }
  return n;
}

}  // namespace

TEST_CASE("the warm-up asks for the rank's embedding and layer-0 share", "[source_warmup]") {
  formats::test::TempDir tmp;
  const std::string dir = test::make_tiny_checkpoint(tmp.file("src"), 3);
  QuantizeOptions options;
  options.in_dir = dir;
  const formats::CheckpointDir source(dir);
  uint64_t total = 0;
  for (int rank = 0; rank < 3; ++rank) {
    SourceWarmup warmup(options, rank, 3);
    warmup.join();
    const uint64_t want = first_read_bytes(dir, rank, 3);
    INFO("rank " << rank);
    CHECK(want > 0);
    CHECK(warmup.n_bytes_advised() == want);
    total += want;
  }
  SourceWarmup one(options, 0, 1);
  one.join();
  CHECK(one.n_bytes_advised() == total);                   // one rank reads what three share
  CHECK(total > source.tensor("embed.weight").n_bytes());  // the embedding and more
}

TEST_CASE("no warm-up where layer 0 may not be read, nor from a bad source", "[source_warmup]") {
  formats::test::TempDir tmp;
  const std::string dir = test::make_tiny_checkpoint(tmp.file("src"), 4);
  QuantizeOptions options;
  options.in_dir = dir;
  for (const char* mode : {"resume", "export-only", "shard"}) {
    QuantizeOptions o = options;
    o.resume = std::string(mode) == "resume";
    o.export_only = std::string(mode) != "resume";
    if (std::string(mode) == "shard") o.shard = "model-00001-of-00002.safetensors";
    SourceWarmup warmup(o, 0, 1);
    warmup.join();
    INFO(mode);
    CHECK(warmup.n_bytes_advised() == 0);
  }
  QuantizeOptions missing = options;
  missing.in_dir = tmp.file("nowhere");
  SourceWarmup warmup(missing, 0, 1);  // must not throw
  warmup.join();
  CHECK(warmup.n_bytes_advised() == 0);
}
