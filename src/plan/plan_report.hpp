// The `plan` dry run: for a tensor list and a rank count, which rank owns what, bytes read and
// written per rank, peak host/GPU memory per rank during calibration, and the I/O-bound time.
// Owns: the memory and time model (written out in
// plan_report.cpp and in the printed report). Does not own: the ownership rule (dist/
// ownership_plan), the tensor table (model/tensor_table) or option parsing (cli/cmd_plan).
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "core/enum_table.hpp"
#include "dist/ownership_plan.hpp"
#include "formats/checkpoint_dir.hpp"
#include "model/config.hpp"
#include "model/tensor_table.hpp"
#include "plan/plan_phases.hpp"
#include "recipe/recipe.hpp"

namespace qf::pipeline {

struct PlanReportOptions {
  int world_size = 8;
  int ranks_per_node = 0;   // 0: min(world_size, 8); ranks on a node share its disk
  double read_gbps = 10.0;  // per node, 1e9 bytes/s (default: one NVMe node, an input)
  double write_gbps = 0.0;  // per node; 0: same as read_gbps
  int samples = 128;        // calibration sequences (the replaced workflow used 128)
  int seq_len = 2048;       // tokens per sequence
  Recipe recipe = Recipe::kExperts;
  bool with_owners = false;  // keep tensor -> rank in the report (JSON "owners")
  // Effective TFLOP/s of one GPU's calibration forward (0: leave compute out): the linears
  // (BF16 tensor-core GEMMs, with the norms/mHC/routing around them) and the attention core
  // (FP32 kernels). `plan --gpu` fills both from gpu_calibration_rates().
  double calib_tflops = 0.0;
  double calib_attention_tflops = 0.0;
  std::string gpu;  // where the rates came from, for the report
};

struct CalibrationRates {
  double linear_tflops = 0, attention_tflops = 0;
};
// The GPUs `plan --gpu` knows.
enum class CalibrationGpu { kH100, kH200, kB200 };
const EnumTable<CalibrationGpu>& calibration_gpus();  // parse, name and --help of --gpu
// Measured on an H100 SXM (bench/RESULTS.md, benchmark 2a: steady-state layer of 2 V4-Flash
// layers, 2 x 4096 tokens per batch); other GPUs scaled by dense BF16 peak (linears) and FP32
// peak (attention); h200 is the same chip (its faster memory is not credited).
CalibrationRates gpu_calibration_rates(CalibrationGpu gpu);

struct RankReport {
  int rank = 0;
  uint64_t n_tensors = 0;            // source tensors owned
  uint64_t n_nvfp4 = 0;              // of which become NVFP4
  uint64_t n_out_tensors = 0;        // output tensors this rank writes
  uint64_t src_bytes = 0;            // owned source bytes (read once)
  uint64_t nvfp4_bytes = 0;          // NVFP4 results the rank produces (all in the output)
  uint64_t work_bytes = 0;           // of them, what its HDF5 store writes (not derived)
  uint64_t passthrough_bytes = 0;    // owned copied tensors (of src, copied into the output)
  uint64_t out_bytes = 0;            // owned output bytes (the rank's export shard)
  uint64_t read_bytes = 0;           // src
  uint64_t write_bytes = 0;          // work + out
  std::map<int, LayerBytes> layers;  // the same per layer (-1: outside the layers)
  PhaseTimes phases;                 // when a GPU's rates are known (options.calib_tflops > 0)
  uint64_t host_peak_bytes = 0;      // staging of the rank's largest layer share (see model)
  uint64_t gpu_peak_bytes = 0;       // the calibration working set (same on every rank)
  double io_seconds = 0.0;
};

// The per-rank calibration working set on the GPU (terms named as in the printed report).
struct MemoryModel {
  uint64_t layer_weights_bytes = 0;  // W: largest layer in source precision
  int layer_weights_layer = -1;
  uint64_t dequant_bytes = 0;  // D: largest FP8/FP4 owner group dequantized to BF16
  std::string dequant_group;
  uint64_t tokens_per_rank = 0;   // ceil(samples / R) * seq_len
  uint64_t activation_bytes = 0;  // A: residual streams in + out, BF16
  uint64_t sequence_bytes = 0;    // S: one sequence's attention + MoE dispatch scratch
  uint64_t amax_bytes = 0;        // input + weight amax (F32) of every NVFP4 linear
  uint64_t gpu_bytes = 0;         // W + D + A + S + amax
};

struct PlanReport {
  PlanReportOptions options;  // resolved (ranks_per_node, write_gbps filled in)
  std::string source;         // what the tensor list came from, for the header line
  uint64_t n_src_tensors = 0, src_bytes = 0, src_params = 0;
  uint64_t src_params_mtp = 0;  // of src_params, in MTP layers (model cards quote without)
  uint64_t n_out_tensors = 0, out_bytes = 0, n_nvfp4 = 0;
  dist::PlanBalance balance;
  uint64_t fingerprint = 0;
  MemoryModel memory;
  std::vector<RankReport> ranks;
  double job_seconds = 0.0;  // max over ranks of io_seconds
  int slowest_rank = 0;
  // Calibration compute (options.calib_tflops > 0): every rank runs its share of the samples
  // through every layer; the layer's weights stream in while the previous layer computes.
  double calib_flops = 0.0;            // the whole calibration set through the regular layers
  double calib_compute_seconds = 0.0;  // sum over layers of flops / rate, / world
  double total_seconds = 0.0;          // job_seconds + calib_compute_seconds (no overlap credit)
  PhaseTimes phases;  // max over ranks, phase by phase (plan_phases.hpp), with a GPU's rates
  std::vector<std::pair<std::string, int>> owners;  // filled when options.with_owners
};

// Everything the report says, from a tensor list (checkpoint_tensors() or
// checkpoint_dir_tensors()) and the config it belongs to. Throws qf::Error on bad options.
PlanReport build_plan_report(const model::ModelConfig& config,
                             const std::vector<model::ModelTensor>& tensors,
                             const PlanReportOptions& options, const std::string& source);

// Fixed-width per-rank table, totals and the model with its formulas (stdout material).
void print_plan_report(const PlanReport& report, std::ostream& out);
nlohmann::json plan_report_json(const PlanReport& report);

}  // namespace qf::pipeline
