// `quantforge make-tiny`: command line of the synthetic checkpoint writer (pipeline/make_tiny).
// Owns: options, preset/config selection, validation before any file is touched.
#include <iostream>

#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "core/check.hpp"
#include "formats/path_overlap.hpp"
#include "model/presets.hpp"
#include "model/tensor_table.hpp"
#include "synthetic/make_tiny.hpp"

namespace qf::cli {

int cmd_make_tiny(const Args& args) {
  const std::string preset_help = model::presets_help("built-in config:");
  const std::string format_help = model::weight_formats().help("weight storage:");

  po::options_description input("input");
  input.add_options()("preset", po::value<std::string>()->default_value("tiny"),
                      preset_help.c_str())("config", po::value<std::string>(),
                                           "config.json to use instead of a preset");
  po::options_description output("output");
  output.add_options()("out", po::value<std::string>()->required(),
                       "output directory (created; must be absent or empty)")(
      "format", po::value<std::string>()->default_value("native"), format_help.c_str())(
      "seed", po::value<uint64_t>()->default_value(0),
      "random seed; values depend only on (config, seed), not on --shards")(
      "shards", po::value<int>()->default_value(4), "number of safetensors shards")(
      "force", "replace --out if it exists and is not empty");
  po::options_description all("make-tiny options");
  all.add(input).add(output);
  po::options_description logging("logging");
  add_common_options(logging);
  all.add(logging);

  po::variables_map vm;
  if (!parse_command_line("make-tiny", "--out DIR [--preset NAME | --config FILE] [options]",
                          "Writes a synthetic DeepSeek V4 checkpoint with every tensor name, shape "
                          "and dtype of the real one for the config: config.json, sharded "
                          "safetensors and model.safetensors.index.json.",
                          all, po::positional_options_description(), args, vm)) {
    return 0;
  }

  pipeline::MakeTinyOptions options;
  options.format =
      parse_enum_option(model::weight_formats(), vm["format"].as<std::string>(), "make-tiny");
  options.seed = vm["seed"].as<uint64_t>();
  options.n_shards = vm["shards"].as<int>();
  if (options.n_shards < 1) throw UsageError{"--shards must be >= 1", "make-tiny"};
  options.out_dir = vm["out"].as<std::string>();
  options.force = vm.count("force") > 0;
  if (vm.count("config")) {
    if (!vm["preset"].defaulted()) {
      throw UsageError{"give either --preset or --config, not both", "make-tiny"};
    }
    if (options.force) {
      formats::check_not_inside({"--config", vm["config"].as<std::string>()},
                                {"--out", options.out_dir}, "--force would delete it");
    }
    options.config = model::ModelConfig::load(vm["config"].as<std::string>());
  } else {
    try {
      options.config = model::preset_config(vm["preset"].as<std::string>());
    } catch (const Error& e) {
      throw UsageError{"--preset: " + e.message(), "make-tiny"};
    }
  }
  if (options.format == model::WeightFormat::kNative && !options.config.has_quantization_config()) {
    throw UsageError{"--format native needs a config with quantization_config (use --format bf16)",
                     "make-tiny"};
  }
  pipeline::make_tiny(options);
  return 0;
}

}  // namespace qf::cli
