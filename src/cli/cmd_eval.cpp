// `quantforge eval --source SRC --out OUT`: what the NVFP4 export costs in accuracy against its
// source (pipeline/eval), on any number of ranks. Owns: option parsing, the report file and the
// table; the evaluation itself is pipeline/eval.
#include <limits.h>
#include <stdlib.h>

#include <string>

#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "core/check.hpp"
#include "core/log.hpp"
#include "core/malloc_tuning.hpp"
#include "dist/mpi_communicator.hpp"
#include "dist/mpi_env.hpp"
#include "dist/collective_step.hpp"
#include "eval/eval.hpp"
#include "report/quantization_report.hpp"

namespace qf::cli {
namespace {

std::string real_dir_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  char buf[PATH_MAX];
  return realpath(dir.c_str(), buf) ? std::string(buf) : dir;
}

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) ? std::string(buf) : path;
}

}  // namespace

int cmd_eval(const Args& args) {
  pipeline::EvalOptions run;
  po::options_description input("input"), tokens("held-out tokens"), output("output");
  input.add_options()  //
      ("source", po::value(&run.source_dir)->required(),
       "the checkpoint that was quantized (native FP8/FP4 or BF16)")  //
      ("out", po::value(&run.out_dir)->required(),
       "its NVFP4 export (read only: the report goes next to it, never into it)");
  tokens.add_options()  //
      ("tokens", po::value(&run.tokens_path),
       "held-out token ids: safetensors (input_ids) or JSONL, as quantize --calib; default: the "
       "synthetic set with --seed (a seed other than quantize's default 0, so not the default "
       "calibration tokens)")  //
      ("samples", po::value(&run.samples)->default_value(8),
       "sequences (with --tokens: default every sample of the file)")                         //
      ("seq-len", po::value(&run.seq_len)->default_value(256), "tokens per sequence (>= 2)")  //
      ("seed", po::value(&run.seed)->default_value(pipeline::kEvalDefaultSeed),
       "seed of the synthetic held-out set")  //
      ("batch", po::value(&run.batch)->default_value(4),
       "sequences per forward: bounds activation memory (results agree up to summation "
       "order)")  //
      ("weights-only", po::bool_switch(),
       "simulate W4A16: decoded weights, unquantized inputs (separates weight from activation "
       "error)");
  output.add_options()  //
      ("report", po::value(&run.report_path),
       "JSON report into which the eval numbers are merged (atomically, by rank 0, keeping "
       "quantize's section; a .txt table beside it); default: OUT.quantization_report.json, "
       "next to the export, where quantize wrote its part")  //
      ("worst", po::value(&run.n_worst)->default_value(10), "worst modules named");
  po::options_description all("eval options");
  all.add(input).add(tokens).add(output);
  add_common_options(all);
  po::variables_map vm;
  if (!parse_command_line(
          "eval", "--source SRC --out OUT [options]",
          "Runs the source model and the quantized model layer by layer over held-out tokens and\n"
          "reports what quantization cost: KL(source || quantized) of the next-token\n"
          "distributions, top-1 agreement, perplexity of both, the relative L2 error of every\n"
          "decoder layer's output (each model fed its own hidden states) and of every NVFP4\n"
          "module's output on the source model's input, naming the worst modules.\n"
          "The quantized model is simulated as served (W4A4): NVFP4 weights decoded from OUT,\n"
          "their inputs quantized per 16-element block with the exported input_scale; every other\n"
          "tensor comes from SRC. CPU FP32 reference forward; ranks split the samples.\n"
          "  mpirun -np 2 quantforge eval --source SRC --out OUT   # -> OUT.quantization_report.json",
          all, {}, args, vm)) {
    return 0;
  }
  if (!run.tokens_path.empty() && vm["samples"].defaulted()) run.samples = 0;
  run.quantize_activations = !vm["weights-only"].as<bool>();
  QF_CHECK(run.tokens_path.empty() || vm["seed"].defaulted(),
           "--seed applies to the synthetic set "
           "only, not to --tokens");
  QF_CHECK(run.n_worst >= 0, "--worst must be >= 0");
  if (run.report_path.empty()) run.report_path = pipeline::quantization_report_path(run.out_dir);
  QF_CHECK(real_dir_of(run.report_path) != real_path(run.out_dir), "--report", run.report_path,
           "is inside the export", run.out_dir,
           "(that would break its checksums and file list); write it elsewhere");
  dist::MpiCommunicator comm(mpi_env(), dist::CommunicatorOptions{});
  // Experts are decoded into fresh 33.5 MB buffers over and over: reuse the freed ones (~17%
  // less wall time on a 2-core probe at V4-Flash dimensions, same numbers, +16% peak memory).
  keep_freed_memory_for_reuse();
  const pipeline::EvalReport report = pipeline::run_eval(run, comm);
  // On rank 0, as a collective step: a failed write stops every rank instead of leaving them
  // waiting.
  pipeline::run_on_root(comm, 0, "writing the report", [&] {
    nlohmann::json doc = pipeline::read_quantization_report(run.report_path);
    doc["eval"] = pipeline::eval_report_json(report);
    pipeline::write_quantization_report(run.report_path, doc);
    pipeline::print_eval_table(report);
    log_info("eval: numbers merged into ", run.report_path, " (and ",
             pipeline::quantization_report_text_path(run.report_path), "), ", report.seconds,
             " s");
  });
  comm.barrier("eval done");
  return 0;
}

}  // namespace qf::cli
