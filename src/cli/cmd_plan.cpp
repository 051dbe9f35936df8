// `quantforge plan`: command line of the dry run. Owns: options and their validation before any
// file is read or written. Does not own the tensor list, the report or its files (plan/).
#include <iostream>

#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "core/check.hpp"
#include "model/presets.hpp"
#include "model/tensor_table.hpp"
#include "plan/plan_run.hpp"

namespace qf::cli {
namespace {

po::options_description plan_options() {
  const std::string recipe_help = pipeline::recipes().help("which weights become NVFP4:");
  const std::string format_help = model::weight_formats().help(
      "source storage for --config/--preset (default: native when the config has "
      "quantization_config, else bf16):");
  const std::string gpu_help = pipeline::calibration_gpus().help(
      "add the calibration compute time, from the forward's FLOPs and the rates of this GPU:");
  const std::string preset_help = model::presets_help("built-in config:");
  const pipeline::PlanReportOptions defaults;

  po::options_description input("input (one of --config, --preset, --in)");
  input.add_options()("config", po::value<std::string>(), "config.json: plan without weights")(
      "preset", po::value<std::string>(), preset_help.c_str())(
      "in", po::value<std::string>(),
      "checkpoint directory: plan from its index and shard headers (config.json from the "
      "directory unless --config is given)")("format", po::value<std::string>(),
                                             format_help.c_str());
  po::options_description dist("distribution and disk");
  dist.add_options()("ranks", po::value<int>()->default_value(defaults.world_size),
                     "MPI ranks (one per GPU)")("ranks-per-node",
                                                po::value<int>()->default_value(0),
                                                "ranks sharing one node's disk (0: min(ranks, 8))")(
      "disk-gbps", po::value<double>()->default_value(defaults.read_gbps),
      "disk read bandwidth per node, GB/s (default: one NVMe node; an input, measure yours)")(
      "write-gbps", po::value<double>()->default_value(0.0),
      "disk write bandwidth per node, GB/s (0: same as --disk-gbps)");
  po::options_description calib("calibration and quantization");
  calib.add_options()("samples", po::value<int>()->default_value(defaults.samples),
                      "calibration sequences")(
      "seq-len", po::value<int>()->default_value(defaults.seq_len), "tokens per sequence")(
      "gpu", po::value<std::string>(), gpu_help.c_str())(
      "calib-tflops", po::value<double>(),
      "effective TFLOP/s per GPU of the calibration linears (instead of --gpu's)")(
      "calib-attn-tflops", po::value<double>(),
      "effective TFLOP/s per GPU of the attention core (default: --calib-tflops)")(
      "recipe", po::value<std::string>()->default_value("experts"), recipe_help.c_str());
  po::options_description output("output");
  output.add_options()("json", po::value<std::string>(), "also write the report as JSON here")(
      "owners", "include every tensor's owner rank in the JSON");
  po::options_description all("plan options");
  all.add(input).add(dist).add(calib).add(output);
  po::options_description logging("logging");
  add_common_options(logging);
  all.add(logging);
  return all;
}

// The disk, calibration and recipe settings of the report.
pipeline::PlanReportOptions report_options(const po::variables_map& vm) {
  pipeline::PlanReportOptions options;
  options.world_size = vm["ranks"].as<int>();
  options.ranks_per_node = vm["ranks-per-node"].as<int>();
  options.read_gbps = vm["disk-gbps"].as<double>();
  options.write_gbps = vm["write-gbps"].as<double>();
  options.samples = vm["samples"].as<int>();
  options.seq_len = vm["seq-len"].as<int>();
  options.with_owners = vm.count("owners") > 0;
  if (vm.count("gpu")) {
    options.gpu = vm["gpu"].as<std::string>();
    const auto rates = pipeline::gpu_calibration_rates(
        parse_enum_option(pipeline::calibration_gpus(), options.gpu, "plan"));
    options.calib_tflops = rates.linear_tflops;
    options.calib_attention_tflops = rates.attention_tflops;
  }
  if (vm.count("calib-tflops")) {
    options.calib_tflops = vm["calib-tflops"].as<double>();
    options.calib_attention_tflops = 0;
    options.gpu = "--calib-tflops";
    if (!(options.calib_tflops > 0)) throw UsageError{"--calib-tflops must be > 0", "plan"};
  }
  if (vm.count("calib-attn-tflops")) {
    options.calib_attention_tflops = vm["calib-attn-tflops"].as<double>();
    if (!(options.calib_attention_tflops > 0) || !(options.calib_tflops > 0)) {
      throw UsageError{"--calib-attn-tflops must be > 0 and needs --gpu or --calib-tflops", "plan"};
    }
  }
  if (options.world_size < 1) throw UsageError{"--ranks must be >= 1", "plan"};
  if (options.ranks_per_node < 0) throw UsageError{"--ranks-per-node must be >= 0", "plan"};
  if (!(options.read_gbps > 0) || options.write_gbps < 0) {
    throw UsageError{"--disk-gbps must be > 0 and --write-gbps >= 0", "plan"};
  }
  if (options.samples < 1 || options.seq_len < 1) {
    throw UsageError{"--samples and --seq-len must be >= 1", "plan"};
  }
  options.recipe = parse_enum_option(pipeline::recipes(), vm["recipe"].as<std::string>(), "plan");
  return options;
}

}  // namespace

int cmd_plan(const Args& args) {
  const po::options_description all = plan_options();
  po::variables_map vm;
  if (!parse_command_line(
          "plan", "(--config FILE | --preset NAME | --in DIR) [--ranks N] [options]",
          "Dry run, no weights needed: which rank owns which tensors (balanced by bytes within "
          "every layer), bytes read and written per rank, peak host and GPU memory per rank for "
          "layer-by-layer calibration, and the disk-bound time. The table goes to stdout.",
          all, po::positional_options_description(), args, vm)) {
    return 0;
  }

  const int n_inputs = static_cast<int>(vm.count("preset") + vm.count("in") +
                                        (vm.count("config") && !vm.count("in") ? 1 : 0));
  if (n_inputs != 1) throw UsageError{"give exactly one of --config, --preset, --in", "plan"};
  if (vm.count("in") && vm.count("format")) {
    throw UsageError{"--format applies to --config/--preset; --in reads the real storage", "plan"};
  }
  pipeline::PlanRunOptions run;
  run.report = report_options(vm);
  if (vm.count("in")) run.checkpoint_dir = vm["in"].as<std::string>();
  if (vm.count("config")) run.config_path = vm["config"].as<std::string>();
  if (vm.count("preset")) {
    run.preset = vm["preset"].as<std::string>();
    try {
      model::find_preset(run.preset);
    } catch (const Error& e) {
      throw UsageError{"--preset: " + e.message(), "plan"};
    }
  }
  if (vm.count("format")) {
    run.format = parse_enum_option(model::weight_formats(), vm["format"].as<std::string>(), "plan");
  }
  if (vm.count("json")) run.json_path = vm["json"].as<std::string>();
  pipeline::run_plan(run, std::cout);
  return 0;
}

}  // namespace qf::cli
