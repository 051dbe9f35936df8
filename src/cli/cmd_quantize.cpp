// `quantforge quantize`: the main job (calibrate + quantize + per-rank stores + export).
#include "cli/options.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "dist/mpi_communicator.hpp"
#include "pipeline/quantize.hpp"

namespace qf::cli {

int cmd_quantize(const Args& args) {
  pipeline::QuantizeOptions run;
  std::string recipe, kv, backend;
  po::options_description input("input"), calib("calibration"), quant("quantization"),
      output("output and resume");
  input.add_options()  //
      ("in", po::value(&run.in_dir)->required(),
       "source checkpoint: native DeepSeek V4 (FP8 + FP4 experts) or BF16 (from dequant)");
  calib.add_options()  //
      (
          "calib", po::value(&run.calib_path),
          "token ids: safetensors (input_ids [n, L]) or JSONL; default: a deterministic synthetic "
          "set")                                                                                 //
      ("samples", po::value(&run.samples)->default_value(16), "calibration sequences")           //
      ("seq-len", po::value(&run.seq_len)->default_value(256), "tokens per sequence")            //
      ("seed", po::value(&run.seed)->default_value(0), "seed of the synthetic calibration set")  //
      ("amax-file", po::value(&run.amax_file),
       "use these input amax values ({\"layers.N.ffn.experts.E.w1\": amax, ...}) instead of "
       "running calibration; modules not listed count as unseen");
  quant.add_options()  //
      ("recipe", po::value(&recipe)->default_value("experts"),
       "experts: routed experts -> NVFP4, the rest copied (published V4 NVFP4 checkpoints; vLLM, "
       "SGLang) | full: every FP8/FP4 linear -> NVFP4 (generic ModelOpt loaders)")  //
      ("kv-cache", po::value(&kv)->default_value("none"),
       "none | fp8_cast: declare an FP8 KV cache (no k/v scale tensors, as ModelOpt's "
       "constant-amax recipe)")  //
      ("backend", po::value(&backend)->default_value("cpu"), "cpu (the CUDA backend is issue 7)");
  output.add_options()  //
      ("out", po::value(&run.out_dir)->required(),
       "output checkpoint directory (absent or empty; written as OUT.partial, then renamed)")  //
      (
          "work", po::value(&run.work_dir)->required(),
          "work directory for the per-rank HDF5 stores (WORK/rank-R), one committed layer at a "
          "time")                                                                              //
      ("resume", po::bool_switch(&run.resume), "continue the run whose stores are in --work")  //
      ("export-only", po::bool_switch(&run.export_only),
       "write the output from the stores alone (every layer committed)")  //
      ("shard", po::value(&run.shard),
       "with --export-only: rebuild only this output shard file (e.g. "
       "model-00002-of-00004.safetensors) of an existing export; any process count");
  po::options_description all("quantize options");
  all.add(input).add(calib).add(quant).add(output);
  add_common_options(all);
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
  run.recipe = pipeline::parse_recipe(recipe);
  run.kv = pipeline::parse_kv_cache(kv);
  QF_CHECK(backend == "cpu", "--backend", backend, ": only the cpu backend runs quantize so far");
  run.backend = pipeline::Backend::kCpu;
  QF_CHECK(run.shard.empty() || run.export_only, "--shard needs --export-only");
  QF_CHECK(run.samples > 0 && run.seq_len > 0, "--samples and --seq-len must be positive");
  dist::MpiCommunicator comm(mpi_env(), dist::CommunicatorOptions{});
  const auto report = pipeline::run_quantize(run, comm);
  uint64_t totals[5] = {report.n_targets, report.n_blocks_lossless, report.n_blocks_fallback,
                        report.bytes_written, 0};
  comm.allreduce_counts(totals, 5, "quantize totals");
  log_info("quantize: ", totals[0], " tensors quantized in this run (lossless MXFP4 blocks ",
           totals[1], ", fallback blocks ", totals[2], "), ", report.n_fallback_experts,
           " uncalibrated experts, wrote ", ProgressMeter::format_bytes(double(totals[3])), " in ",
           ProgressMeter::format_seconds(report.seconds), " -> ", run.out_dir);
  return 0;
}

}  // namespace qf::cli
