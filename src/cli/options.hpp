// Shared Boost.Program_options plumbing for the subcommands: parsing with clear errors,
// --help, --log-level, and config files. Boost types never leave src/cli/.
#pragma once
#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "core/check.hpp"
#include "core/enum_table.hpp"

namespace qf::cli {

namespace po = boost::program_options;

// Thrown for bad command lines; main prints it with the usage hint and exits 2.
struct UsageError {
  std::string message;
  std::string command;
};

// The value named `name` of an enum option (the table's `what` names the option); an unknown
// name is a UsageError naming the option, the name and every valid one.
template <typename E>
E parse_enum_option(const EnumTable<E>& table, const std::string& name,
                    const std::string& command) {
  try {
    return table.parse(name);
  } catch (const Error& e) {
    throw UsageError{e.message(), command};
  }
}

// A UsageError for each of `names` given on the command line with an empty value (`--shard ''`
// must not mean "no --shard", nor `--calib ''` "the synthetic set").
void refuse_empty_values(const po::variables_map& vm, const std::vector<std::string>& names,
                         const std::string& command);

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
