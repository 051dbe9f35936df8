// `eval`: what quantization cost. Runs the source model and the simulated quantized model
// (NVFP4 W4A4: weights decoded from the export, activations quantized with the exported
// input_scale) layer by layer over held-out tokens, ranks splitting the samples, and reduces
// KL / top-1 / perplexity and per-layer / per-module relative L2 over the ranks.
// Owns: the eval loop, the metrics, the report. Does not own: the simulated model (eval_model),
// the forward (model/), the token set (calibration_data).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dist/communicator.hpp"

namespace qf::dist {
class MpiEnv;
}

namespace qf::pipeline {

// The synthetic held-out set's default seed. `quantize` calibrates on seed 0 by default, so the
// default eval tokens are other sequences of the same synthetic distribution.
constexpr uint64_t kEvalDefaultSeed = 20250611;

struct EvalOptions {
  std::string source_dir;   // the checkpoint that was quantized
  std::string out_dir;      // its export (read only; eval never writes there)
  std::string tokens_path;  // token ids, safetensors / JSONL (load_calibration_set); "": synthetic
  int samples = 8;          // sequences (with tokens_path: <= 0 takes every sample of the file)
  int seq_len = 256;        // >= 2 (perplexity needs a next token)
  uint64_t seed = kEvalDefaultSeed;
  // Sequences per forward: bounds activation memory. Metrics do not depend on it, except the
  // per-module sums in their last bits (an expert's rows arrive in a per-batch order).
  int batch = 4;
  // false: W4A16 (decoded weights, unquantized inputs), to tell weight from activation error.
  bool quantize_activations = true;
  // Where the eval section is merged (quantization_report.hpp); "": next to out_dir,
  // quantization_report_path(out_dir), beside what quantize wrote there.
  std::string report_path;
  int n_worst = 10;  // modules named in the table and in worst_modules
};

struct EvalModuleResult {
  std::string name;
  double sq_err = 0, sq_ref = 0;
  int64_t n_rows = 0;  // tokens that reached the module (all ranks)
  // sqrt(sq_err / sq_ref); NaN when the module saw no token.
  double rel_l2() const;
};

struct EvalReport {
  EvalOptions options;
  std::string token_source;  // "synthetic(seed=...)" or the file
  uint64_t token_fingerprint = 0;
  int n_samples = 0, seq_len = 0, world_size = 1;
  // Over all ranks. Positions: every token (KL, top-1); predicted: tokens with a next token.
  double n_positions = 0, n_predicted = 0;
  double kl_sum = 0, top1_sum = 0, nll_source_sum = 0, nll_quantized_sum = 0;
  std::vector<double> layer_sq_err, layer_sq_ref;  // [num_hidden_layers], hidden after the layer
  std::vector<EvalModuleResult> modules;           // sorted by name
  double seconds = 0;

  double kl_mean() const { return kl_sum / n_positions; }
  double top1_agreement() const { return top1_sum / n_positions; }
  double perplexity_source() const;
  double perplexity_quantized() const;
  double layer_rel_l2(int layer) const;
  // Indices into `modules`, worst rel_l2 first; modules that saw no token last.
  std::vector<size_t> modules_by_error() const;
};

// Collective: every rank of comm calls it with the same options. Throws qf::Error (or
// CollectiveError) on bad input, on every rank alike where the input is shared.
EvalReport run_eval(const EvalOptions& options, dist::Communicator& comm);

// The report as written to options.report_path (eval_report.cpp).
nlohmann::json eval_report_json(const EvalReport& report);
// The human-readable summary (stdout): the numbers, the layers, the worst modules.
void print_eval_table(const EvalReport& report);

// `quantforge eval` over every rank of `mpi` (eval_world.cpp): options.report_path defaults to
// quantization_report_path(out_dir) and must not lie inside the export; run_eval over a host
// communicator, then rank 0 merges the eval section into the report (keeping quantize's) and
// prints the table. Collective: every rank calls it with the same options.
void run_eval_world(EvalOptions options, const dist::MpiEnv& mpi);

}  // namespace qf::pipeline
