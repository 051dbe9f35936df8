// Shared Boost.Program_options plumbing for the subcommands: parsing with clear errors,
// --help, --log-level, and config files. Boost types never leave src/cli/.
#pragma once
#include <boost/program_options.hpp>
#include <string>

#include "cli/commands.hpp"

namespace qf::cli {

namespace po = boost::program_options;

// Thrown for bad command lines; main prints it with the usage hint and exits 2.
struct UsageError {
  std::string message;
  std::string command;
};

// Adds --help and --log-level to `options`.
void add_common_options(po::options_description& options);

// Parses `args` into `vm` against `options` (+ positional). Unknown options, missing values and
// bad values become UsageError naming the option. Returns false when --help was printed (the
// caller returns 0). Applies --log-level. `usage` is the one-line synopsis for --help.
bool parse_command_line(const std::string& command, const std::string& usage,
                        const std::string& description, const po::options_description& options,
                        const po::positional_options_description& positional, const Args& args,
                        po::variables_map& vm);

}  // namespace qf::cli
