// The `plan` report: totals against the tensor table, the recipe's output-size rule, the memory
// and time formulas, the real V4-Pro / V4-Flash configs without weights, and (through
// make-tiny) a real checkpoint giving the same plan as its config.
#include <algorithm>
#include <string>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats_test_util.hpp"
#include "model/presets.hpp"
#include "model/tensor_table.hpp"
#include "plan/plan_report.hpp"
#include "source/checkpoint_tensors.hpp"
#include "synthetic/make_tiny.hpp"

using namespace qf;
using model::ModelTensor;
using model::WeightFormat;
using pipeline::PlanReport;
using pipeline::PlanReportOptions;
using pipeline::Recipe;

namespace {

PlanReport report_for(const std::string& preset, int world_size, Recipe recipe = Recipe::kExperts,
                      WeightFormat format = WeightFormat::kNative) {
  const model::ModelConfig config = model::preset_config(preset);
  PlanReportOptions options;
  options.world_size = world_size;
  options.recipe = recipe;
  return pipeline::build_plan_report(config, model::checkpoint_tensors(config, format), options,
                                     preset);
}

// Sums over ranks equal the report's totals and the table's.
void check_totals(const PlanReport& report, const std::vector<ModelTensor>& table) {
  CHECK(report.n_src_tensors == table.size());
  CHECK(report.src_bytes == model::total_bytes(table));
  CHECK(report.src_params == model::total_params(table));
  uint64_t n_tensors = 0, src = 0, out = 0, n_out = 0, n_nvfp4 = 0, work = 0, nvfp4 = 0;
  double max_seconds = 0;
  for (const auto& r : report.ranks) {
    n_tensors += r.n_tensors;
    src += r.src_bytes;
    out += r.out_bytes;
    n_out += r.n_out_tensors;
    n_nvfp4 += r.n_nvfp4;
    // The NVFP4 work store is streamed into the output, not read back; every source byte is read
    // once (copies of what the forward read come from the page cache, others are the read).
    CHECK(r.read_bytes == r.src_bytes);
    CHECK(r.write_bytes == r.work_bytes + r.out_bytes);
    CHECK(r.nvfp4_bytes + r.passthrough_bytes == r.out_bytes);
    CHECK(r.work_bytes <= r.nvfp4_bytes);
    work += r.work_bytes;
    nvfp4 += r.nvfp4_bytes;
    max_seconds = std::max(max_seconds, r.io_seconds);
  }
  CHECK(n_tensors == report.n_src_tensors);
  CHECK(src == report.src_bytes);
  CHECK(out == report.out_bytes);
  CHECK(n_out == report.n_out_tensors);
  CHECK(n_nvfp4 == report.n_nvfp4);
  CHECK(report.job_seconds == max_seconds);
  // The stores leave FP4 experts' packed weights in the source (they write the scales, about 1/9
  // of an expert's NVFP4 bytes); a BF16 source has none to leave.
  const bool has_fp4 = std::any_of(table.begin(), table.end(), [](const ModelTensor& t) {
    return t.role == model::TensorRole::kFp4Weight;
  });
  if (has_fp4) {
    CHECK(work < nvfp4);
  } else {
    CHECK(work == nvfp4);
  }
}

}  // namespace

TEST_CASE("plan totals equal the tensor table for every preset and rank count", "[plan]") {
  const std::string preset = GENERATE("tiny", "small", "v4-flash", "v4-pro");
  const int world_size = GENERATE(1, 3, 8);
  const WeightFormat format = GENERATE(WeightFormat::kNative, WeightFormat::kBf16);
  INFO(preset << " ranks " << world_size << " " << model::weight_formats().name(format));
  const model::ModelConfig config = model::preset_config(preset);
  const auto table = model::checkpoint_tensors(config, format);
  const PlanReport report = report_for(preset, world_size, Recipe::kExperts, format);
  REQUIRE(report.ranks.size() == static_cast<size_t>(world_size));
  check_totals(report, table);
}

TEST_CASE("recipe experts: routed experts of the main layers become NVFP4", "[plan]") {
  const WeightFormat format = GENERATE(WeightFormat::kNative, WeightFormat::kBf16);
  const model::ModelConfig config = model::preset_config("tiny");
  const auto table = model::checkpoint_tensors(config, format);
  const PlanReport report = report_for("tiny", 3, Recipe::kExperts, format);
  const uint64_t n_targets = uint64_t(config.num_hidden_layers) * config.n_routed_experts * 3;
  CHECK(report.n_nvfp4 == n_targets);
  // Each target writes 4 tensors; in the native format its `.scale` is dropped.
  const uint64_t n_dropped = format == WeightFormat::kNative ? n_targets : 0;
  CHECK(report.n_out_tensors == table.size() - n_targets - n_dropped + 4 * n_targets);
  uint64_t expected_out = 0;
  for (const auto& t : table) {
    const bool target = t.expert >= 0 && !t.is_mtp && t.n_rows > 0 &&
                        t.native_role != model::TensorRole::kPlain &&
                        t.native_role != model::TensorRole::kFp4Scale &&
                        t.native_role != model::TensorRole::kFp8Scale;
    CHECK(pipeline::is_nvfp4_target(t, Recipe::kExperts) == target);
    if (target) {
      expected_out += pipeline::nvfp4_n_bytes(t.n_rows, t.n_cols);
    } else if (!(t.expert >= 0 && !t.is_mtp && format == WeightFormat::kNative)) {
      expected_out += t.spec.n_bytes();  // copied (main-layer expert scales are dropped)
    }
  }
  CHECK(report.out_bytes == expected_out);
}

TEST_CASE("recipe full also converts attention and shared experts, never MTP", "[plan]") {
  const model::ModelConfig config = model::preset_config("tiny");
  const auto table = model::checkpoint_tensors(config, WeightFormat::kNative);
  const PlanReport experts = report_for("tiny", 2, Recipe::kExperts);
  const PlanReport full = report_for("tiny", 2, Recipe::kFull);
  CHECK(full.n_nvfp4 > experts.n_nvfp4);
  CHECK(full.fingerprint == experts.fingerprint);  // ownership does not depend on the recipe
  for (const auto& t : table) {
    if (t.is_mtp) CHECK_FALSE(pipeline::is_nvfp4_target(t, Recipe::kFull));
    if (t.spec.name == "layers.0.attn.wq_a.weight") {
      CHECK(pipeline::is_nvfp4_target(t, Recipe::kFull));
      CHECK_FALSE(pipeline::is_nvfp4_target(t, Recipe::kExperts));
    }
  }
  CHECK(pipeline::recipes().parse("full") == Recipe::kFull);
  CHECK_THROWS_AS(pipeline::recipes().parse("everything"), qf::Error);
}

TEST_CASE("NVFP4 bytes: codes + E4M3 block scales + two F32 scalars", "[plan]") {
  CHECK(pipeline::nvfp4_n_bytes(16, 16) == 128 + 16 + 8);
  CHECK(pipeline::nvfp4_n_bytes(7168, 3072) == 7168ull * 3072 / 2 + 7168ull * 3072 / 16 + 8);
}

TEST_CASE("memory and time follow the written formulas", "[plan]") {
  const model::ModelConfig c = model::preset_config("v4-flash");
  PlanReportOptions options;
  options.world_size = 6;
  options.samples = 100;
  options.seq_len = 1000;
  options.read_gbps = 4.0;
  options.write_gbps = 2.0;
  options.ranks_per_node = 3;
  const auto table = model::checkpoint_tensors(c, WeightFormat::kNative);
  const PlanReport report = pipeline::build_plan_report(c, table, options, "flash");
  const auto& m = report.memory;
  CHECK(m.tokens_per_rank == 17 * 1000);  // ceil(100 / 6) sequences
  CHECK(m.activation_bytes == 2ull * 17000 * c.hidden_size * c.hc_mult * 2);
  CHECK(m.sequence_bytes ==
        1000ull *
                (uint64_t(c.num_attention_heads) * c.head_dim + c.head_dim +
                 uint64_t(c.num_experts_per_tok) * (c.hidden_size + 2 * c.moe_intermediate_size)) *
                2 +
            1000ull * c.num_experts_per_tok * 8);
  CHECK(m.gpu_bytes == m.layer_weights_bytes + m.dequant_bytes + m.activation_bytes +
                           m.sequence_bytes + m.amax_bytes);
  uint64_t largest_layer = 0;
  for (int layer = -1; layer < c.n_layers_total(); ++layer) {
    uint64_t n = 0;
    for (const auto& t : table) n += t.layer == layer ? t.spec.n_bytes() : 0;
    largest_layer = std::max(largest_layer, n);
  }
  CHECK(m.layer_weights_bytes == largest_layer);
  for (const auto& r : report.ranks) {
    CHECK(r.io_seconds == Approx(r.read_bytes / (4e9 / 3) + r.write_bytes / (2e9 / 3)));
    CHECK(r.host_peak_bytes > 0);
    CHECK(r.host_peak_bytes < m.layer_weights_bytes);
  }
}

TEST_CASE("the real V4 configs plan without weights", "[plan]") {
  const PlanReport pro = report_for("v4-pro", 8);
  const PlanReport flash = report_for("v4-flash", 8);
  // Model cards: ~1.6 T (Pro) and ~284 B (Flash) parameters, quoted without the MTP layer.
  CHECK(pro.src_params - pro.src_params_mtp == Approx(1.6e12).epsilon(0.03));
  CHECK(flash.src_params - flash.src_params_mtp == Approx(284e9).epsilon(0.03));
  // Calibration fits one 80 GB GPU per rank with the default 128 x 2048 tokens.
  CHECK(pro.memory.gpu_bytes < 40ull << 30);
  CHECK(flash.memory.gpu_bytes < 16ull << 30);
  // Balanced: totals within 0.5 %, every layer within 10 %.
  for (const PlanReport* r : {&pro, &flash}) {
    CHECK(r->balance.imbalance < 0.005);
    CHECK(r->balance.worst_layer_imbalance < 0.10);
    CHECK(r->job_seconds > 0);
  }
}

TEST_CASE("a make-tiny checkpoint plans exactly like its config", "[plan]") {
  const WeightFormat format = GENERATE(WeightFormat::kNative, WeightFormat::kBf16);
  formats::test::TempDir tmp;
  pipeline::MakeTinyOptions make;
  make.config = model::preset_config("tiny");
  make.format = format;
  make.n_shards = 3;
  make.out_dir = tmp.file("tiny");
  const auto written = pipeline::make_tiny(make);
  const formats::CheckpointDir dir(make.out_dir);
  PlanReportOptions options;
  options.world_size = 3;
  const PlanReport from_dir = pipeline::build_plan_report(
      make.config, pipeline::checkpoint_dir_tensors(dir, make.config), options, "dir");
  const PlanReport from_config = report_for("tiny", 3, Recipe::kExperts, format);
  CHECK(from_dir.n_src_tensors == written.n_tensors);
  CHECK(from_dir.src_bytes == written.n_bytes);
  CHECK(from_dir.n_src_tensors == dir.index().weight_map.size());
  CHECK(from_dir.fingerprint == from_config.fingerprint);
  CHECK(from_dir.n_out_tensors == from_config.n_out_tensors);
  CHECK(from_dir.out_bytes == from_config.out_bytes);
  CHECK(from_dir.memory.gpu_bytes == from_config.memory.gpu_bytes);
}
