// `quantforge dequant`: command line of the native -> BF16 conversion. Owns: options and their
// validation. Does not own the job or its totals (dequant/).
#include "cli/options.hpp"
#include "core/check.hpp"
#include "core/stop_signal.hpp"
#include "dequant/dequant.hpp"

namespace qf::cli {

int cmd_dequant(const Args& args) {
  po::options_description options("dequant options");
  std::string backend = "auto";
  pipeline::DequantOptions run;
  uint64_t chunk_mib = 64;
  const std::string backend_help = dist::backend_choices().help("the conversion kernels:");
  options.add_options()  //
      ("in", po::value(&run.in_dir)->required(),
       "source checkpoint directory (native FP8/FP4 mixed, with index.json and config.json)")  //
      ("out", po::value(&run.out_dir)->required(),
       "output directory; must not exist or be empty (written as OUT.partial, then renamed)")  //
      ("backend", po::value(&backend)->default_value("auto"), backend_help.c_str())            //
      ("chunk-mib", po::value(&chunk_mib)->default_value(64),
       "source MiB converted per step; bounds host (and device) memory per rank")  //
      ("progress-json", po::value(&run.progress_json),
       "append the job's events to this file, one JSON object per line (rank 0; README "
       "'Operating a run'): phases, bytes converted, rate and ETA, warnings");
  add_common_options(options);
  po::variables_map vm;
  if (!parse_command_line(
          "dequant", "--in SRC --out DST [options]",
          "Writes a BF16 copy of a native DeepSeek V4 checkpoint: FP8 E4M3 weights (128x128 "
          "block scales) and packed FP4 E2M1 experts (per-32 UE8M0 scales) become BF16, exactly\n"
          "(code x scale in FP32, one round-to-nearest-even to BF16); their .scale tensors are "
          "dropped; everything else is copied byte for byte.\n"
          "config.json loses quantization_config so transformers loads the result as an "
          "unquantized model. Shard files keep the source names; output bytes are identical\n"
          "for any number of ranks. Run under MPI for several ranks:\n"
          "  mpirun -np 8 quantforge dequant --in SRC --out DST",
          options, {}, args, vm)) {
    return 0;
  }
  refuse_empty_values(vm, {"in", "out"}, "dequant");
  const auto backend_choice = parse_enum_option(dist::backend_choices(), backend, "dequant");
  QF_CHECK(chunk_mib >= 1 && chunk_mib <= 16384, "--chunk-mib must be in [1, 16384], got",
           chunk_mib);
  run.chunk_bytes = chunk_mib << 20;
  install_stop_handlers();  // SIGINT/SIGTERM: stop at the next safe point, remove OUT.partial
  pipeline::run_dequant_world(run, backend_choice, mpi_env());
  return 0;
}

}  // namespace qf::cli
