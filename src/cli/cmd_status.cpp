// `quantforge status --work WORK [--out OUT] [--json]`: where a quantize run is, what --resume
// and --export-only would do, whether OUT is good; read-only (safe while the job runs). Owns:
// options and the exit code (RunState). Does not own the gathering (status/).
#include <iostream>

#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "status/run_status.hpp"
#include "status/status_print.hpp"

namespace qf::cli {

int cmd_status(const Args& args) {
  pipeline::StatusOptions run;
  po::options_description options("status options");
  options.add_options()                                                                      //
      ("work", po::value(&run.work_dir)->required(), "the quantize run's --work directory")  //
      ("out", po::value(&run.out_dir),
       "its --out directory (default: the one WORK/job.json names)")  //
      ("in", po::value(&run.in_dir),
       "its --in checkpoint (default: the one WORK/job.json names)")                      //
      ("no-verify-out", "do not checksum OUT's files (only check that they are listed)")  //
      ("json", "print one JSON document (format quantforge.status) instead of text");
  add_common_options(options);
  po::positional_options_description positional;
  po::variables_map vm;
  if (!parse_command_line(
          "status", "--work WORK [--out OUT] [--in IN] [--json]",
          "Where a quantize run is: per rank the committed layers, bytes, last commit and rate; "
          "phase and ETA; the live writer of each store (PID, host, since) or a dead run; the "
          "run's identity and what --resume / --export-only would do or why they would be "
          "refused; whether OUT passes its checksums. Read-only: takes no lock, writes nothing.\n"
          "Exit codes: 0 complete, 3 running, 4 resumable, 5 broken (1 error, 2 usage).",
          options, positional, args, vm)) {
    return 0;
  }
  run.verify_out = vm.count("no-verify-out") == 0;
  const pipeline::RunStatus status = pipeline::inspect_run(run);
  if (vm.count("json")) {
    std::cout << pipeline::status_to_json(status).dump(2) << std::endl;
  } else {
    pipeline::print_status_text(status, std::cout);
  }
  return static_cast<int>(status.state);
}

}  // namespace qf::cli
