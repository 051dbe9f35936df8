// model/forward_flops: the calibration forward's FLOPs per token against the published active
// parameter counts (V4-Flash ~13B, V4-Pro ~49B active), the attention term's dependence on the
// sequence length, and the plan's compute projection built on it.
#include <algorithm>
#include <map>
#include <vector>

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

TEST_CASE("plan's phase model: the streamed pipeline, layer by layer", "[flops][plan]") {
  auto c = model::preset_config("v4-flash");
  c.num_hidden_layers = 3;
  pipeline::PhaseModelInputs in;
  in.read_bps = 1e9;
  in.write_bps = 0.5e9;
  in.linear_tflops = 100;
  in.attention_tflops = 10;
  in.tokens_per_rank = 4096;
  in.seq_len = 4096;
  std::vector<double> busy;  // forward + host staging per layer
  const std::vector<uint64_t> reads = {10'000'000'000, 0, 3'000'000'000};
  std::map<int, pipeline::LayerBytes> layers;
  for (int l = 0; l < 3; ++l) {
    const auto f = model::layer_flops_per_token(c, l, 4096);
    busy.push_back(4096 * (f.linears / 100e12 + f.attention / 10e12) +
                   double(reads[size_t(l)]) / pipeline::kPlanHostStagingBps);
    layers[l] = {reads[size_t(l)], 1'000'000'000};  // 2 s of writes each
  }
  layers[-1] = {2'000'000'000, 1'000'000'000};  // outside: 2 s read, 2 s write
  layers[3] = {1'000'000'000, 500'000'000};     // an MTP layer: 1 s + 1 s, after calibration
  // Layer 0's 10 s read outlasts the setup; layer 1 waits for layer 2's read (3 s) and its own
  // writes (2 s) unless its forward is longer; the last layer's writes drain in quantization.
  // Reads and writes at once: the longer plus a share of the shorter.
  const auto both = [](double r, double w) {
    return std::max(r, w) + pipeline::kPlanReadWriteSerialShare * std::min(r, w);
  };
  const double expected = std::max(pipeline::kPlanCalibSetupSeconds, 10.0) + both(2.0, 2.0) +
                          std::max(busy[0], both(0.0, 2.0)) + std::max(busy[1], both(3.0, 2.0)) +
                          busy[2];
  const pipeline::PhaseTimes t = pipeline::rank_phase_times(c, layers, in);
  CHECK(t.calibration == Approx(expected).epsilon(1e-12));
  CHECK(t.quantization == Approx(2.0 + 2.0).epsilon(1e-12));
  CHECK(t.start == pipeline::kPlanStartSeconds);
  CHECK(t.export_ == pipeline::kPlanExportSeconds);
  CHECK(t.total() == Approx(t.start + t.calibration + t.quantization + t.export_));
  // A short read of layer 0 hides behind the setup.
  layers[0].read = 1'000'000;
  CHECK(pipeline::rank_phase_times(c, layers, in).calibration <
        t.calibration - (10.0 - pipeline::kPlanCalibSetupSeconds) + 1e-6);
  // Layer 1's read follows layer 0's during the setup: as much of it as the setup outlasts
  // layer 0's read by is done when layer 0 starts.
  layers[0].read = 0;
  layers[1].read = 3'000'000'000;  // 3 s
  const auto forward_of = [&](int l) {
    const auto f = model::layer_flops_per_token(c, l, 4096);
    return 4096 * (f.linears / 100e12 + f.attention / 10e12);
  };
  const double setup = pipeline::kPlanCalibSetupSeconds;
  REQUIRE(setup < 3.0);
  const double busy1 = forward_of(1) + 3e9 / pipeline::kPlanHostStagingBps;
  const double ahead = setup + both(2.0, 2.0) + std::max(forward_of(0), both(3.0 - setup, 2.0)) +
                       std::max(busy1, both(3.0, 2.0)) + busy[2];
  CHECK(pipeline::rank_phase_times(c, layers, in).calibration == Approx(ahead).epsilon(1e-12));
  // The job waits for the slowest rank in each phase, which may be different ranks.
  pipeline::PhaseTimes other = t;
  other.calibration = 1;
  other.quantization = 5;
  const pipeline::PhaseTimes job = pipeline::job_phase_times({t, other});
  CHECK(job.calibration == t.calibration);
  CHECK(job.quantization == 5);
}

TEST_CASE("plan fills the phases, slowest rank per phase, only with a GPU's rates",
          "[flops][plan]") {
  const auto c = model::preset_config("v4-flash");
  const auto tensors = model::checkpoint_tensors(c, model::WeightFormat::kNative);
  pipeline::PlanReportOptions o;
  o.world_size = 4;
  o.samples = 8;
  o.seq_len = 1024;
  CHECK(pipeline::build_plan_report(c, tensors, o, "test").phases.total() == 0);
  o.calib_tflops = 100;
  const auto report = pipeline::build_plan_report(c, tensors, o, "test");
  double slowest = 0;
  for (const auto& r : report.ranks) {
    CHECK(r.read_bytes == r.src_bytes);  // every source byte read once
    uint64_t read = 0;
    for (const auto& [layer, bytes] : r.layers) read += bytes.read;
    CHECK(read == r.src_bytes);
    slowest = std::max(slowest, r.phases.calibration);
  }
  CHECK(report.phases.calibration == slowest);
  CHECK(report.phases.calibration > pipeline::kPlanCalibSetupSeconds);
}
