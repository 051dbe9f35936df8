// run_eval_world: the world around run_eval, and the report it merges (see eval.hpp).
#include <limits.h>
#include <stdlib.h>

#include <string>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/malloc_tuning.hpp"
#include "dist/collective_step.hpp"
#include "dist/mpi_communicator.hpp"
#include "dist/mpi_env.hpp"
#include "eval/eval.hpp"
#include "report/quantization_report.hpp"

namespace qf::pipeline {
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

void run_eval_world(EvalOptions options, const dist::MpiEnv& mpi) {
  if (options.report_path.empty()) {
    options.report_path = quantization_report_path(options.out_dir);
  }
  QF_CHECK(real_dir_of(options.report_path) != real_path(options.out_dir), "--report",
           options.report_path, "is inside the export", options.out_dir,
           "(that would break its checksums and file list); write it elsewhere");
  dist::MpiCommunicator comm(mpi, dist::CommunicatorOptions{});
  // Experts are decoded into fresh 33.5 MB buffers over and over: reuse the freed ones (~17%
  // less wall time on a 2-core probe at V4-Flash dimensions, same numbers, +16% peak memory).
  keep_freed_memory_for_reuse();
  const EvalReport report = run_eval(options, comm);
  // On rank 0, as a collective step: a failed write stops every rank instead of leaving them
  // waiting.
  dist::run_on_root(comm, 0, "writing the report", [&] {
    nlohmann::json doc = read_quantization_report(options.report_path);
    doc["eval"] = eval_report_json(report);
    write_quantization_report(options.report_path, doc);
    print_eval_table(report);
    log_info("eval: numbers merged into ", options.report_path, " (and ",
             quantization_report_text_path(options.report_path), "), ", report.seconds, " s");
  });
  comm.barrier("eval done");
}

}  // namespace qf::pipeline
