// quantize_owned_targets with several workers (Nvfp4OpsPool): the record is the one a single
// worker makes, byte for byte and in the same order, for every layer, rank, recipe and
// --expert-weights mode; an error in one target stops the layer and names that target.
#include <atomic>
#include <string>

#include "catch_compat.hpp"
#include "core/log.hpp"
#include "error_test_util.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats_test_util.hpp"
#include "quantize/quantize_plan.hpp"
#include "quantize/quantize_weights.hpp"
#include "tiny_checkpoint_util.hpp"

using namespace qf;
using namespace qf::pipeline;

namespace {

std::string tiny_checkpoint(const formats::test::TempDir& dir) {
  return qf::test::make_tiny_checkpoint(dir.path() + "/tiny", 7);
}

}  // namespace

TEST_CASE("quantize_owned_targets: any number of workers gives the same record", "[quantize]") {
  const LogLevel saved_level = log_level();
  set_log_level(LogLevel::kWarn);
  formats::test::TempDir dir;
  const formats::CheckpointDir source(tiny_checkpoint(dir));
  gpu::Nvfp4OpsPool one(dist::ComputeBackend::kCpu, 1), four(dist::ComputeBackend::kCpu, 4);
  REQUIRE(one.size() == 1);
  REQUIRE(four.size() == 4);
  for (const Recipe recipe : {Recipe::kExperts, Recipe::kFull}) {
    for (const int world : {1, 2}) {
      for (const ExpertWeights mode : {ExpertWeights::kCast, ExpertWeights::kRequantize}) {
        const QuantizePlan plan = build_quantize_plan(source, recipe, world, mode);
        for (int layer = 0; layer < plan.config.num_hidden_layers; ++layer) {
          for (int rank = 0; rank < world; ++rank) {
            QuantizeStats s1, s4;
            const auto r1 = quantize_owned_targets(plan, source, layer, rank, &s1, one);
            const auto r4 = quantize_owned_targets(plan, source, layer, rank, &s4, four);
            INFO(recipes().name(recipe)
                 << " world " << world << " expert weights " << expert_weights_modes().name(mode)
                 << " layer " << layer << " rank " << rank);
            CHECK(r1 == r4);  // tensors in the same order, same bytes; same i64 cast counts
            CHECK(s1.n_targets == s4.n_targets);
            CHECK(s1.n_blocks_lossless == s4.n_blocks_lossless);
            CHECK(s1.n_blocks_fallback == s4.n_blocks_fallback);
            CHECK(s1.bytes_read == s4.bytes_read);
            if (s1.n_targets > 0) CHECK(!r4.tensors.empty());
          }
        }
      }
    }
  }
  set_log_level(saved_level);
}

TEST_CASE("quantize_owned_targets: a failing target stops the layer and is named", "[quantize]") {
  const LogLevel saved_level = log_level();
  set_log_level(LogLevel::kWarn);
  formats::test::TempDir dir;
  const formats::CheckpointDir source(tiny_checkpoint(dir));
  const QuantizePlan plan = build_quantize_plan(source, Recipe::kFull, 1);
  const auto targets = plan.targets_of_layer(0);
  REQUIRE(targets.size() > 4);
  const std::string bad = targets[targets.size() / 2];
  std::atomic<int> n_calls{0};
  const TensorBytes bytes_of = [&](const std::string& name) {
    ++n_calls;
    QF_CHECK(name != bad, "tensor", name, ": simulated read error");
    return source.read_tensor(name);
  };
  gpu::Nvfp4OpsPool ops(dist::ComputeBackend::kCpu, 4);
  QuantizeStats stats;
  const std::string error =
      qf::test::error_of([&] { quantize_owned_targets(plan, bytes_of, 0, 0, &stats, ops); });
  CHECK(qf::test::contains(error, bad));
  CHECK(qf::test::contains(error, "simulated read error"));
  CHECK(n_calls > 0);
  set_log_level(saved_level);
}
