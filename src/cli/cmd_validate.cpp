// `quantforge validate --source SRC --out OUT`: command line of the export check; the report goes
// to stdout, exit 1 (qf::Error with the summary) when any check fails. Owns: option parsing.
// Does not own the checks, the report or the work-store sweep (validate/).
#include <algorithm>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "core/cpu_affinity.hpp"
#include "validate/validate.hpp"

namespace qf::cli {

int cmd_validate(const Args& args) {
  po::options_description options("validate options");
  pipeline::ValidateRunOptions run;
  pipeline::ValidateOptions& checks = run.checks;
  const int default_threads = std::min(8, allowed_cpu_count());
  options.add_options()  //
      ("source", po::value(&checks.source_dir)->required(),
       "the source checkpoint the export was made from (native FP8/FP4 or BF16)")  //
      ("out", po::value(&checks.out_dir)->required(),
       "the exported NVFP4 checkpoint to check")  //
      ("threads", po::value(&checks.n_threads)->default_value(default_threads),
       "tensors checked at once (memory: one 4M-element row chunk per thread)")  //
      ("failures", po::value(&checks.max_listed_failures)->default_value(8),
       "failures listed per check in the report")  //
      ("tensors", po::value(&run.max_tensors)->default_value(20),
       "per-tensor accuracy rows printed, worst first (0 = all)")  //
      ("json", po::value(&run.json_path),
       "also write the full report (every check and tensor) as JSON to this file")  //
      ("work", po::value(&run.work_dir),
       "also verify the run's per-rank HDF5 stores (every committed file's size and XXH64)")  //
      ("report", po::value(&run.report_path),
       "merge the verdict (section \"validate\") into this quantization report and redraw its "
       "text and page; default: OUT.quantization_report.json when it exists")  //
      ("no-report", po::bool_switch(&run.no_report), "leave every quantization report alone");
  add_common_options(options);
  po::variables_map vm;
  if (!parse_command_line(
          "validate", "--source SRC --out OUT [options]",
          "Checks an exported NVFP4 checkpoint against its source (docs/EXPORT_FORMAT.md):\n"
          "  index/inventory/layout  every source tensor copied or quantized per the recipe "
          "declared in OUT's config.json, nothing else, index = shards, total_size\n"
          "  copies                  copied tensors byte-identical (streamed)\n"
          "  scales/global-scale/pair-scales  scales finite and > 0, weight_scale_2 by rule, "
          "w1/w3 equal\n"
          "  accuracy/lossless       every element within the NVFP4 bound of the exact source "
          "value; lossless MXFP4 blocks bit-exact\n"
          "  config/hf-quant-config/other-files/checksums  JSON files, copied files, "
          "quantforge_checksums.json if present\n"
          "Exit status 0 when every check passes, 1 otherwise.",
          options, {}, args, vm)) {
    return 0;
  }
  refuse_empty_values(vm, {"source", "out", "work", "json", "report"}, "validate");
  pipeline::run_validate(run, std::cout);
  return 0;
}

}  // namespace qf::cli
