// `quantforge validate --source SRC --out OUT`: checks an NVFP4 export against its source and
// prints the report on stdout; exits 1 (qf::Error with the summary) when any check fails.
// Owns: option parsing and presentation only; the checks are pipeline/validate.
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "core/check.hpp"
#include "core/cpu_affinity.hpp"
#include "formats/atomic_file.hpp"
#include "validate/validate.hpp"
#include "validate/verify_work.hpp"

namespace qf::cli {

int cmd_validate(const Args& args) {
  po::options_description options("validate options");
  pipeline::ValidateOptions run;
  size_t max_tensors = 20;
  std::string json_path, work_dir;
  const int default_threads =
      std::min(8, allowed_cpu_count());
  options.add_options()  //
      ("source", po::value(&run.source_dir)->required(),
       "the source checkpoint the export was made from (native FP8/FP4 or BF16)")             //
      ("out", po::value(&run.out_dir)->required(), "the exported NVFP4 checkpoint to check")  //
      ("threads", po::value(&run.n_threads)->default_value(default_threads),
       "tensors checked at once (memory: one 4M-element row chunk per thread)")  //
      ("failures", po::value(&run.max_listed_failures)->default_value(8),
       "failures listed per check in the report")  //
      ("tensors", po::value(&max_tensors)->default_value(20),
       "per-tensor accuracy rows printed, worst first (0 = all)")  //
      ("json", po::value(&json_path),
       "also write the full report (every check and tensor) as JSON to this file")  //
      ("work", po::value(&work_dir),
       "also verify the run's per-rank HDF5 stores (every committed file's size and XXH64)");
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
  QF_CHECK(run.max_listed_failures >= 0, "--failures must be >= 0, got", run.max_listed_failures);
  const auto report = pipeline::validate_export(run);
  pipeline::print_validate_report(report, std::cout, max_tensors, run.max_listed_failures);
  std::cout.flush();
  if (!json_path.empty()) formats::write_file_atomic(json_path, report.to_json().dump(2) + "\n");
  bool work_ok = true;
  if (!work_dir.empty()) {
    const auto work = pipeline::verify_work_stores(work_dir);
    work_ok = work.problems.empty();
    std::cout << "work stores " << work_dir << ": " << work.world_size << " rank(s), "
              << work.n_files << " committed files, "
              << (work_ok ? "all checksums match" : "PROBLEMS:") << "\n";
    for (const auto& line : work.problems) std::cout << "  " << line << "\n";
    std::cout.flush();
  }
  if (!report.passed()) QF_FAIL(report.summary());
  QF_CHECK(work_ok, "validate: the work stores in", work_dir, "are damaged (listed above)");
  return 0;
}

}  // namespace qf::cli
