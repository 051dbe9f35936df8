// The subcommands of `quantforge`. Each lives in its own cli/cmd_<name>.cpp and receives the
// arguments after its name. Returns the process exit code; throws qf::Error on failure.
#pragma once
#include <string>
#include <vector>

namespace qf::cli {

using Args = std::vector<std::string>;

int cmd_make_tiny(const Args& args);
int cmd_inspect(const Args& args);

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const Args& args);
  bool needs_mpi;  // initialise MPI before running (multi-rank jobs)
};

// All subcommands, in the order `quantforge --help` lists them.
const std::vector<Command>& commands();

}  // namespace qf::cli
