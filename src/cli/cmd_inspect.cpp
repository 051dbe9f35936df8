// `quantforge inspect DIR`: command line of the checkpoint report (tensor table, per-dtype
// totals, config summary, check against the DeepSeek V4 table) on stdout, text or JSON.
// Owns: options and the exit status of --check. Does not own the report (inspect/).
#include <iostream>

#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "core/log.hpp"
#include "inspect/inspect.hpp"

namespace qf::cli {

int cmd_inspect(const Args& args) {
  po::options_description options("inspect options");
  options.add_options()("dir", po::value<std::string>()->required(), "checkpoint directory")(
      "totals-only", "print only the per-dtype totals and the config summary")(
      "json", "print one JSON document instead of text")(
      "checksums", "add an XXH64 checksum of every tensor's bytes (reads all data)")(
      "check",
      "exit 1 unless config.json is a valid DeepSeek V4 config and the tensors match "
      "its table exactly");
  add_common_options(options);
  po::positional_options_description positional;
  positional.add("dir", 1);
  po::variables_map vm;
  if (!parse_command_line("inspect", "DIR [--totals-only] [--json] [--checksums] [--check]",
                          "Prints the tensor table (name, dtype, shape, bytes, shard), per-dtype "
                          "totals and the config summary of a safetensors checkpoint.",
                          options, positional, args, vm)) {
    return 0;
  }
  pipeline::InspectOptions run;
  run.dir = vm["dir"].as<std::string>();
  run.totals_only = vm.count("totals-only") > 0;
  run.as_json = vm.count("json") > 0;
  run.checksums = vm.count("checksums") > 0;
  const pipeline::InspectResult result = pipeline::inspect_checkpoint(run, std::cout);
  if (vm.count("check") && !result.matches()) {
    log_error("inspect --check: ", result.problem());
    return 1;
  }
  return 0;
}

}  // namespace qf::cli
