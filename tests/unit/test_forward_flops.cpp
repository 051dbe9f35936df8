// model/forward_flops: the calibration forward's FLOPs per token against the published active
// parameter counts (V4-Flash ~13B, V4-Pro ~49B active), the attention term's dependence on the
// sequence length, and the plan's compute projection built on it.
#include "catch_compat.hpp"
#include "model/forward_flops.hpp"
#include "model/presets.hpp"
#include "model/tensor_table.hpp"
#include "plan/plan_report.hpp"

using namespace qf;

TEST_CASE("linear FLOPs per token are twice the active linear parameters", "[flops]") {
  // Short sequences: attention-core work is negligible, so the count is 2 x active linear
  // weights (embedding excluded: a lookup; head excluded: calibration never runs it).
  const auto flash = model::preset_config("v4-flash");
  const double f = model::model_flops_per_token(flash, 1);
  CHECK(f > 2 * 11e9);
  CHECK(f < 2 * 14e9);
  const auto pro = model::preset_config("v4-pro");
  const double p = model::model_flops_per_token(pro, 1);
  CHECK(p > 2 * 44e9);
  CHECK(p < 2 * 52e9);
}

TEST_CASE("attention FLOPs grow with the sequence, saturating on sliding layers", "[flops]") {
  const auto c = model::preset_config("v4-flash");
  // Layer 0 is sliding: beyond the window the average number of keys tends to the window.
  const auto s128 = model::layer_flops_per_token(c, 0, 128);
  const auto s4096 = model::layer_flops_per_token(c, 0, 4096);
  const auto s65536 = model::layer_flops_per_token(c, 0, 65536);
  CHECK(s128.linears == s4096.linears);
  CHECK(s4096.attention > s128.attention);
  const double full_window = 2.0 * c.num_attention_heads * 2 * c.head_dim * c.sliding_window;
  CHECK(s65536.attention < full_window);
  CHECK(s65536.attention > 0.99 * full_window);
  // A CSA layer (2) also scores its compressed entries and attends to up to index_topk of them.
  const auto csa = model::layer_flops_per_token(c, 2, 65536);
  CHECK(csa.attention > s65536.attention * 2);
  CHECK(csa.linears > s65536.linears);  // compressor + indexer projections
  CHECK(csa.experts == s65536.experts);
}

TEST_CASE("plan adds calibration compute when given a GPU rate", "[flops][plan]") {
  const auto c = model::preset_config("v4-flash");
  const auto tensors = model::checkpoint_tensors(c, model::WeightFormat::kNative);
  pipeline::PlanReportOptions o;
  o.world_size = 8;
  o.samples = 64;
  o.seq_len = 1024;
  const auto disk_only = pipeline::build_plan_report(c, tensors, o, "test");
  CHECK(disk_only.calib_compute_seconds == 0);
  CHECK(disk_only.total_seconds == disk_only.job_seconds);
  o.calib_tflops = 100;
  const auto with_gpu = pipeline::build_plan_report(c, tensors, o, "test");
  const double expected = model::model_flops_per_token(c, 1024) * 64 * 1024 / (8 * 100e12);
  CHECK(with_gpu.calib_compute_seconds == Approx(expected).epsilon(1e-12));
  CHECK(with_gpu.total_seconds == Approx(with_gpu.job_seconds + expected).epsilon(1e-12));
  CHECK_THROWS(pipeline::calibration_gpus().parse("tpu"));
  // Separate attention rate: only the attention term moves.
  o.calib_attention_tflops = 10;
  const auto split = pipeline::build_plan_report(c, tensors, o, "test");
  double attention = 0;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    attention += model::layer_flops_per_token(c, l, 1024).attention;
  }
  const double tokens = 64.0 * 1024;
  CHECK(split.calib_compute_seconds ==
        Approx(expected + tokens * attention * (1 / 10e12 - 1 / 100e12) / 8).epsilon(1e-9));
  const auto b200 = pipeline::gpu_calibration_rates(pipeline::CalibrationGpu::kB200);
  const auto h100 = pipeline::gpu_calibration_rates(pipeline::CalibrationGpu::kH100);
  CHECK(b200.linear_tflops > 2 * h100.linear_tflops);
  CHECK(h100.linear_tflops > 0);
  CHECK(h100.attention_tflops > 0);
}
