// layer_arena_layout (the CUDA calibration's device arena, identical on every rank without
// communication): aligned, non-overlapping slots in request order, owner runs tiling the arena,
// errors naming the tensor; on make-tiny checkpoints it covers every linear and does not depend
// on the rank count; on the real presets every arena linear is one the forward loads. Also the
// NCCL exchange's host-bytes rule: the layer-bytes hook asks a rank only for tensors it owns.
#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "calibrate/calibrate.hpp"
#include "calibrate/layer_arena.hpp"
#include "calibrate/layer_weight_exchange.hpp"
#include "catch_compat.hpp"
#include "core/check.hpp"
#include "core/log.hpp"
#include "error_test_util.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats_test_util.hpp"
#include "model/forward_decoder_layer.hpp"
#include "model/layer_weights.hpp"
#include "model/presets.hpp"
#include "quantize/quantize_plan.hpp"
#include "quantize/quantize_weights.hpp"
#include "synthetic/make_tiny.hpp"
#include "tiny_checkpoint_util.hpp"

using namespace qf;
using namespace qf::pipeline;

namespace {

using qf::test::contains;
using qf::test::error_of;

NativeTensor linear(const std::string& name, StorageKind kind, int64_t n_rows, int64_t n_cols,
                    int layer, int expert = -1) {
  NativeTensor t;
  t.name = name + ".weight";
  t.kind = kind;
  t.n_rows = n_rows;
  t.n_cols = n_cols;
  t.layer = layer;
  t.expert = expert;
  switch (kind) {
    case StorageKind::kFp8Block:
      t.scale_name = name + ".scale";
      t.stored = {t.name, DType::kF8E4M3, {n_rows, n_cols}};
      t.scale = {t.scale_name, DType::kF8E8M0, {(n_rows + 127) / 128, (n_cols + 127) / 128}};
      break;
    case StorageKind::kFp4Block:
      t.scale_name = name + ".scale";
      t.stored = {t.name, DType::kI8, {n_rows, n_cols / 2}};
      t.scale = {t.scale_name, DType::kF8E8M0, {n_rows, n_cols / 32}};
      break;
    case StorageKind::kPlain:
      t.stored = {t.name, DType::kBF16, {n_rows, n_cols}};
      break;
  }
  return t;
}

NativeTensor plain(const std::string& name, DType dtype, std::vector<int64_t> shape, int layer) {
  NativeTensor t;
  t.name = name;
  t.stored = {name, dtype, std::move(shape)};
  t.layer = layer;
  return t;
}

// Structural invariants of any layout.
void check_layout(const ArenaLayout& a) {
  REQUIRE(a.n_bytes % kArenaAlign == 0);
  uint64_t previous_end = 0;
  for (const ArenaSlot& s : a.slots) {
    INFO(s.tensor->name);
    CHECK(s.offset % kArenaAlign == 0);
    CHECK(s.offset >= previous_end);
    CHECK(s.n_stored == s.tensor->stored.n_bytes());
    if (s.tensor->kind == StorageKind::kPlain) {
      CHECK(s.n_scale == 0);
    } else {
      CHECK(s.n_scale == s.tensor->scale.n_bytes());
      CHECK(s.scale_offset % kArenaAlign == 0);
      CHECK(s.scale_offset >= s.offset + s.n_stored);
    }
    CHECK(s.end() <= a.n_bytes);
    previous_end = s.end();
  }
  // Runs: back to back from 0 to n_bytes, neighbours of different owners, every slot inside the
  // run of its owner.
  uint64_t at = 0;
  for (size_t i = 0; i < a.runs.size(); ++i) {
    CHECK(a.runs[i].begin == at);
    CHECK(a.runs[i].end > a.runs[i].begin);
    if (i > 0) CHECK(a.runs[i].owner != a.runs[i - 1].owner);
    at = a.runs[i].end;
  }
  CHECK(at == a.n_bytes);
  for (const ArenaSlot& s : a.slots) {
    bool inside = false;
    for (const ArenaRun& r : a.runs) {
      inside |= r.owner == s.owner && s.offset >= r.begin && s.end() <= r.end;
    }
    CHECK(inside);
  }
}

std::string tiny_checkpoint(const formats::test::TempDir& dir) {
  return qf::test::make_tiny_checkpoint(dir.path() + "/tiny", 3);
}

}  // namespace

TEST_CASE("arena_weight_names: every calib linear but the router, as .weight", "[arena]") {
  const auto names =
      arena_weight_names({"layers.0.attn.wq_a", "layers.0.ffn.gate", "layers.0.ffn.experts.1.w2"});
  CHECK(names ==
        std::set<std::string>{"layers.0.attn.wq_a.weight", "layers.0.ffn.experts.1.w2.weight"});
}

TEST_CASE("layer_arena_layout: request order, aligned slots, scales after codes, owner runs",
          "[arena]") {
  NativeTensorIndex tensors;
  for (auto t : {linear("layers.2.attn.wq_a", StorageKind::kFp8Block, 300, 200, 2),
                 linear("layers.2.attn.wo_b", StorageKind::kPlain, 64, 48, 2),
                 linear("layers.2.ffn.experts.0.w1", StorageKind::kFp4Block, 96, 64, 2, 0),
                 linear("layers.2.ffn.experts.0.w3", StorageKind::kFp4Block, 96, 64, 2, 0),
                 plain("layers.2.attn_norm.weight", DType::kBF16, {48}, 2)}) {
    tensors[t.name] = t;
  }
  std::vector<NativeTensor> all;
  for (const auto& [name, t] : tensors) all.push_back(t);
  const std::vector<std::string> forward = {
      "layers.2.attn_norm.weight", "layers.2.attn.wq_a.weight", "layers.2.attn.wo_b.weight",
      "layers.2.ffn.experts.0.w1.weight", "layers.2.ffn.experts.0.w3.weight"};
  const std::set<std::string> arena = {"layers.2.attn.wq_a.weight", "layers.2.attn.wo_b.weight",
                                       "layers.2.ffn.experts.0.w1.weight",
                                       "layers.2.ffn.experts.0.w3.weight"};
  for (const int world : {1, 2, 3, 8}) {
    INFO("world " << world);
    const dist::OwnershipPlan plan = source_ownership_plan(all, world);
    const ArenaLayout a = layer_arena_layout(2, forward, tensors, false, arena, plan);
    check_layout(a);
    REQUIRE(a.slots.size() == 4);  // the norm is a small tensor
    CHECK(a.slots[0].key == "attn.wq_a.weight");
    CHECK(a.slots[1].key == "attn.wo_b.weight");
    CHECK(a.slots[2].key == "ffn.experts.0.w1.weight");
    CHECK(a.slots[3].key == "ffn.experts.0.w3.weight");
    // FP8 300x200: 60000 code bytes (-> 60160), then 3x2 E8M0 scales (-> 256).
    CHECK(a.slots[0].offset == 0);
    CHECK(a.slots[0].scale_offset == 60160);
    CHECK(a.slots[1].offset == 60160 + 256);
    for (const ArenaSlot& s : a.slots) CHECK(s.owner == plan.owner_of(s.tensor->name));
    // w1 and w3 of one expert: one owner group, so one run covers both.
    CHECK(a.slots[2].owner == a.slots[3].owner);
    // The same offsets for every world size: only the owners depend on the plan.
    const ArenaLayout one =
        layer_arena_layout(2, forward, tensors, false, arena, source_ownership_plan(all, 1));
    CHECK(one.n_bytes == a.n_bytes);
    CHECK(one.runs.size() == 1);
    for (size_t i = 0; i < a.slots.size(); ++i) CHECK(one.slots[i].offset == a.slots[i].offset);
  }
  const dist::OwnershipPlan plan = source_ownership_plan(all, 2);
  // Errors name the tensor and the reason.
  NativeTensorIndex bad = tensors;
  bad["layers.2.attn.wo_b.weight"].stored.dtype = DType::kF32;
  CHECK(error_of([&] {
          layer_arena_layout(2, forward, bad, false, arena, plan);
        }).find("layers.2.attn.wo_b.weight is F32") != std::string::npos);
  CHECK(error_of([&] {
          layer_arena_layout(2, {forward.begin(), forward.end() - 1}, tensors, false, arena, plan);
        }).find("layers.2.ffn.experts.0.w3.weight is not among the weights") != std::string::npos);
  CHECK(error_of([&] {
          layer_arena_layout(3, forward, tensors, false, arena, plan);
        }).find("is not in layer 3") != std::string::npos);
}

TEST_CASE("layer_arena_layout on make-tiny: every linear, rank-count independent offsets",
          "[arena]") {
  formats::test::TempDir dir;
  const formats::CheckpointDir source(tiny_checkpoint(dir));
  const model::ModelConfig config = model::preset_config("tiny");
  const std::vector<NativeTensor> all = classify_native_tensors(source);
  const NativeTensorIndex tensors = index_native_tensors(all);
  for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
    INFO("layer " << layer);
    const auto names = calib_linear_names(config, layer);
    const auto arena = arena_weight_names(names);
    const auto forward = model::layer_weight_names(config, layer);
    const ArenaLayout base = layer_arena_layout(layer, forward, tensors, config.tie_word_embeddings,
                                                arena, source_ownership_plan(all, 1));
    std::set<std::string> placed;
    for (const ArenaSlot& s : base.slots) placed.insert(s.tensor->name);
    CHECK(placed == arena);
    CHECK(arena.size() + 1 == names.size());  // all but the router
    for (const int world : {2, 3, 4, 7}) {
      INFO("world " << world);
      const dist::OwnershipPlan plan = source_ownership_plan(all, world);
      const ArenaLayout a =
          layer_arena_layout(layer, forward, tensors, config.tie_word_embeddings, arena, plan);
      check_layout(a);
      REQUIRE(a.slots.size() == base.slots.size());
      CHECK(a.n_bytes == base.n_bytes);
      for (size_t i = 0; i < a.slots.size(); ++i) {
        CHECK(a.slots[i].offset == base.slots[i].offset);
        CHECK(a.slots[i].owner == plan.owner_of(a.slots[i].tensor->name));
      }
      // Deterministic: a second call is the same layout.
      const ArenaLayout again =
          layer_arena_layout(layer, forward, tensors, config.tie_word_embeddings, arena, plan);
      REQUIRE(again.runs.size() == a.runs.size());
      for (size_t i = 0; i < a.runs.size(); ++i) {
        CHECK(again.runs[i].begin == a.runs[i].begin);
        CHECK(again.runs[i].owner == a.runs[i].owner);
      }
    }
  }
}

// The production check "every arena linear is loaded by the forward" must hold for the real
// models (names only: no files).
TEST_CASE("every arena linear of the real presets is a weight the forward loads", "[arena]") {
  for (const char* preset : {"tiny", "small", "v4-flash", "v4-pro"}) {
    const model::ModelConfig config = model::preset_config(preset);
    for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
      std::set<std::string> loaded;
      for (const auto& n : model::layer_weight_names(config, layer)) {
        loaded.insert(native_weight_name(n, config.tie_word_embeddings));
      }
      size_t n_missing = 0;
      for (const auto& w : arena_weight_names(calib_linear_names(config, layer))) {
        n_missing += loaded.count(w) ? 0 : 1;
      }
      INFO(preset << " layer " << layer);
      CHECK(n_missing == 0);
    }
  }
}

// With --comm nccl a rank's host holds only the linears it owns: the layer-bytes hook
// (quantize_owned_targets) must never ask for anything else. A target's `.scale` and its w1/w3
// sibling are in its owner group (ownership_plan.hpp); this checks it end to end.
TEST_CASE("quantize_owned_targets asks a rank only for tensors it owns", "[arena]") {
  const LogLevel saved_level = log_level();
  set_log_level(LogLevel::kWarn);  // one info line per quantized tensor otherwise
  formats::test::TempDir dir;
  const formats::CheckpointDir source(tiny_checkpoint(dir));
  gpu::Nvfp4OpsPool ops(dist::ComputeBackend::kCpu,
                        3);  // bytes_of is called from 3 workers at once
  for (const Recipe recipe : {Recipe::kExperts, Recipe::kFull}) {
    for (const int world : {1, 2, 3}) {
      // requantize reads the w1/w3 sibling's weight too (its amax), not only its scale.
      for (const ExpertWeights mode : {ExpertWeights::kCast, ExpertWeights::kRequantize}) {
        const QuantizePlan plan = build_quantize_plan(source, recipe, world, mode);
        std::map<std::string, std::string> weight_of_scale;
        for (const auto& t : plan.tensors) {
          if (!t.scale_name.empty()) weight_of_scale[t.scale_name] = t.name;
        }
        for (int layer = 0; layer < plan.config.num_hidden_layers; ++layer) {
          const std::set<std::string> arena =
              arena_weight_names(calib_linear_names(plan.config, layer));
          for (int rank = 0; rank < world; ++rank) {
            std::atomic<size_t> n_asked{0}, n_foreign{0}, n_outside_arena{0};
            const TensorBytes bytes_of = [&](const std::string& name) {
              const auto w = weight_of_scale.find(name);
              const std::string weight = w == weight_of_scale.end() ? name : w->second;
              ++n_asked;
              n_foreign += plan.ownership.owner_of(weight) == rank ? 0 : 1;
              n_outside_arena += arena.count(weight) ? 0 : 1;
              return source.read_tensor(name);
            };
            QuantizeStats stats;
            quantize_owned_targets(plan, bytes_of, layer, rank, &stats, ops);
            INFO(recipes().name(recipe) << " " << expert_weights_modes().name(mode) << " world "
                                        << world << " layer " << layer << " rank " << rank);
            CHECK(n_foreign == 0);
            CHECK(n_outside_arena == 0);
            if (stats.n_targets > 0) CHECK(n_asked > 0);
          }
        }
      }
    }
  }
  set_log_level(saved_level);
}
