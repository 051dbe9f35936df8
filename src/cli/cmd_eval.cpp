// `quantforge eval --source SRC --out OUT`: command line of the accuracy evaluation. Owns: the
// options and their validation. Does not own the evaluation, the report file or the table
// (eval/).
#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "core/check.hpp"
#include "eval/eval.hpp"

namespace qf::cli {

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
          "  mpirun -np 2 quantforge eval --source SRC --out OUT   # -> "
          "OUT.quantization_report.json",
          all, {}, args, vm)) {
    return 0;
  }
  if (!run.tokens_path.empty() && vm["samples"].defaulted()) run.samples = 0;
  run.quantize_activations = !vm["weights-only"].as<bool>();
  QF_CHECK(run.tokens_path.empty() || vm["seed"].defaulted(),
           "--seed applies to the synthetic set "
           "only, not to --tokens");
  QF_CHECK(run.n_worst >= 0, "--worst must be >= 0");
  pipeline::run_eval_world(run, mpi_env());
  return 0;
}

}  // namespace qf::cli
