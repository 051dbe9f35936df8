// `quantforge quantize`: command line of the main job (calibrate + quantize + per-rank stores +
// export). Owns: options and their validation. Does not own the job, its communicators or its
// summary (job/quantize_world).
#include "cli/options.hpp"
#include "core/check.hpp"
#include "core/stop_signal.hpp"
#include "job/quantize_world.hpp"

namespace qf::cli {
namespace {

// What the command line fills: the job's options and the enum options' names.
struct QuantizeArgs {
  pipeline::QuantizeOptions run;
  std::string recipe, kv, backend, comm, act_scale, expert_weights, weight_scale;
};

po::options_description quantize_options(QuantizeArgs& a) {
  pipeline::QuantizeOptions& run = a.run;
  po::options_description input("input"), calib("calibration"), quant("quantization"),
      output("output and resume");
  input.add_options()  //
      ("in", po::value(&run.in_dir)->required(),
       "source checkpoint: native DeepSeek V4 (FP8 + FP4 experts) or BF16 (from dequant)");
  calib.add_options()  //
      ("calib", po::value(&run.calib_path),
       "token ids: safetensors (input_ids [n, L]) or JSONL; default: a deterministic synthetic "
       "set")                                                                                    //
      ("samples", po::value(&run.samples)->default_value(16), "calibration sequences")           //
      ("seq-len", po::value(&run.seq_len)->default_value(256), "tokens per sequence")            //
      ("seed", po::value(&run.seed)->default_value(0), "seed of the synthetic calibration set")  //
      ("cpu-bf16-inputs", po::bool_switch(&run.cpu_bf16_linear_inputs),
       "--backend cpu: round every linear's input to BF16 like the CUDA backend (the reference "
       "the CUDA results are compared with; the default cpu forward is FP32 throughout)")  //
      ("cuda-bf16-inputs", po::bool_switch(&run.cuda_bf16_linear_inputs),
       "--backend cuda: round every linear's input to BF16 for one GEMM (1.8x faster GPU forward) "
       "instead of the default three BF16 planes (hi + mid + lo: FP32-accurate products) that "
       "keep the hidden states and the expert routing on the FP32 reference's (identical expert "
       "token counts, every input amax within 1e-5; README, CUDA backend); with this switch "
       "tokens near a routing tie may pick other experts and amax may differ by a few %")  //
      ("calib-batch", po::value(&run.calib_batch)->default_value(4),
       "sequences per calibration forward: bounds activation memory and sets the expert GEMM "
       "sizes (cuda: 8 x 4096 tokens keeps an H100's MoE GEMMs above half of peak); the cpu "
       "backend's results do not depend on it, the cuda backend's only in the last bits (cuBLAS "
       "picks kernels by shape)")  //
      ("amax-file", po::value(&run.amax_file),
       "use these input amax values ({\"layers.N.ffn.experts.E.w1\": amax, ...}) instead of "
       "running calibration; modules not listed count as unseen");
  const std::string recipe_help = pipeline::recipes().help("which weights become NVFP4:");
  const std::string kv_help = pipeline::kv_caches().help("KV cache the export declares:");
  const std::string backend_help = dist::backend_choices().help(
      "calibration forward and NVFP4 kernels (cuda: weights bit-identical to cpu, input amax "
      "within 1e-5 and the same expert routing, see --cuda-bf16-inputs):");
  const std::string comm_help = dist::comm_choices().help(
      "what carries the cuda calibration's layer weights and input amax between ranks (results "
      "are identical):");
  const std::string act_scale_help =
      pipeline::act_scale_methods().help("activation input_scale = clip / 2688 with clip:") +
      "\npercentile and mse use |x| histograms recorded during calibration (either backend; not "
      "with --amax-file)";
  const std::string expert_weights_help =
      pipeline::expert_weights_modes().help("FP4 routed experts of the source:");
  const std::string weight_scale_help =
      pipeline::weight_scale_methods().help(
          "scales of the requantized NVFP4 weights (FP8/BF16 sources: in --recipe full the "
          "attention, indexer wq_b and shared experts; FP4 experts only with --expert-weights "
          "requantize; cast experts stay exact):") +
      "\nEvery method but max runs with --backend cpu only (no CUDA kernel yet). gptq and "
      "hessian record X^T X of those linears' inputs during calibration (not with --amax-file): "
      "8 * n^2 bytes per distinct input of in_features n, in memory for the current layer on "
      "every rank and in its owner's work store (\"hessian\" stage); routed experts get none "
      "(mse instead)";
  quant.add_options()                                                                  //
      ("recipe", po::value(&a.recipe)->default_value("experts"), recipe_help.c_str())  //
      ("expert-weights", po::value(&a.expert_weights)->default_value("cast"),
       expert_weights_help.c_str())  //
      ("weight-scale", po::value(&a.weight_scale)->default_value("max"),
       weight_scale_help.c_str())                                                      //
      ("kv-cache", po::value(&a.kv)->default_value("none"), kv_help.c_str())           //
      ("backend", po::value(&a.backend)->default_value("auto"), backend_help.c_str())  //
      ("comm", po::value(&a.comm)->default_value("auto"), comm_help.c_str())           //
      ("act-scale", po::value(&a.act_scale)->default_value("max"), act_scale_help.c_str());
  output.add_options()  //
      ("out", po::value(&run.out_dir)->required(),
       "output checkpoint directory (absent or empty; written as OUT.partial, then renamed)")  //
      ("work", po::value(&run.work_dir)->required(),
       "work directory for the per-rank HDF5 stores (WORK/rank-R), one committed layer at a "
       "time")                                                                                 //
      ("resume", po::bool_switch(&run.resume), "continue the run whose stores are in --work")  //
      ("verify-source", po::bool_switch(&run.verify_source),
       "with --resume or --export-only: re-hash every source file and compare with the digests "
       "the work store recorded (accepts a source whose dates or inodes changed, e.g. a copy, "
       "when its contents did not)")  //
      ("export-only", po::bool_switch(&run.export_only),
       "write the output from the stores alone (every layer committed)")  //
      ("progress-json", po::value(&run.progress_json),
       "append the job's events to this file, one JSON object per line (rank 0; README "
       "'Operating a run'): phases, every rank's layer commits, rate and ETA, warnings")  //
      ("shard", po::value(&run.shard),
       "with --export-only: rebuild only this output shard file (e.g. "
       "model-00002-of-00004.safetensors) of an existing export; any process count");
  po::options_description all("quantize options");
  all.add(input).add(calib).add(quant).add(output);
  add_common_options(all);
  return all;
}

}  // namespace

int cmd_quantize(const Args& args) {
  QuantizeArgs a;
  pipeline::QuantizeOptions& run = a.run;
  const po::options_description all = quantize_options(a);
  po::variables_map vm;
  if (!parse_command_line(
          "quantize", "--in SRC --out DST --work WORK [options]",
          "Quantizes a DeepSeek V4 checkpoint to NVFP4 (ModelOpt format, docs/EXPORT_FORMAT.md).\n"
          "Every rank owns a slice of the tensors; calibration records and quantized weights are\n"
          "committed per layer into WORK/rank-R (HDF5), so a crash loses at most one layer\n"
          "(--resume). MTP layers are not calibrated and are copied unchanged.\n"
          "  mpirun -np 8 quantforge quantize --in SRC --out DST --work WORK",
          all, {}, args, vm)) {
    return 0;
  }
  refuse_empty_values(vm, {"in", "out", "work", "calib", "amax-file", "shard"}, "quantize");
  run.recipe = parse_enum_option(pipeline::recipes(), a.recipe, "quantize");
  run.expert_weights =
      parse_enum_option(pipeline::expert_weights_modes(), a.expert_weights, "quantize");
  run.weight_scale =
      parse_enum_option(pipeline::weight_scale_methods(), a.weight_scale, "quantize");
  run.kv = parse_enum_option(pipeline::kv_caches(), a.kv, "quantize");
  const auto backend = parse_enum_option(dist::backend_choices(), a.backend, "quantize");
  const auto comm = parse_enum_option(dist::comm_choices(), a.comm, "quantize");
  try {
    run.act_scale = pipeline::parse_act_scale(a.act_scale);  // the method name through its table
  } catch (const Error& e) {
    throw UsageError{e.message(), "quantize"};
  }
  QF_CHECK(run.shard.empty() || run.export_only, "--shard needs --export-only");
  QF_CHECK(run.samples > 0 && run.seq_len > 0, "--samples and --seq-len must be positive");
  QF_CHECK(run.calib_batch > 0, "--calib-batch must be positive");
  install_stop_handlers();  // SIGINT/SIGTERM: stop at the next safe point, then say how to resume
  pipeline::run_quantize_world(run, backend, comm, mpi_env());
  return 0;
}

}  // namespace qf::cli
