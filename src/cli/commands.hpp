// The subcommands of `quantforge`. Each lives in its own cli/cmd_<name>.cpp and receives the
// arguments after its name. Returns the process exit code; throws qf::Error on failure.
#pragma once
#include <string>
#include <vector>

namespace qf::dist {
class MpiEnv;
}

namespace qf::cli {

using Args = std::vector<std::string>;

int cmd_make_tiny(const Args& args);
int cmd_dequant(const Args& args);
int cmd_quantize(const Args& args);
int cmd_inspect(const Args& args);
int cmd_plan(const Args& args);
int cmd_validate(const Args& args);
int cmd_eval(const Args& args);
int cmd_calib_data(const Args& args);
int cmd_status(const Args& args);

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const Args& args);
  bool needs_mpi;  // initialise MPI before running (multi-rank jobs)
};

// The MPI environment main() set up for a command with needs_mpi (it outlives the command, so
// errors can still MPI_Abort). Throws if the command did not ask for MPI.
const dist::MpiEnv& mpi_env();

// All subcommands, in the order `quantforge --help` lists them.
const std::vector<Command>& commands();

}  // namespace qf::cli
