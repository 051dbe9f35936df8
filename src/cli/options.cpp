// Parsing, --help and error reporting shared by all subcommands.
#include "cli/options.hpp"

#include <iostream>

#include "core/log.hpp"

namespace qf::cli {

void refuse_empty_values(const po::variables_map& vm, const std::vector<std::string>& names,
                         const std::string& command) {
  for (const std::string& name : names) {
    if (vm.count(name) && !vm[name].defaulted() && vm[name].as<std::string>().empty()) {
      throw UsageError{"--" + name + " is empty; give a path (or leave the option out)", command};
    }
  }
}

void add_common_options(po::options_description& options) {
  options.add_options()("help,h", "print this help and exit")(
      "log-level", po::value<std::string>()->default_value("info"),
      log_levels().help("messages on stderr from this level up:").c_str());
}

bool parse_command_line(const std::string& command, const std::string& usage,
                        const std::string& description, const po::options_description& options,
                        const po::positional_options_description& positional, const Args& args,
                        po::variables_map& vm) {
  try {
    po::store(po::command_line_parser(args).options(options).positional(positional).run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: quantforge " << command << " " << usage << "\n\n"
                << description << "\n\n"
                << options << std::endl;
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError{e.what(), command};
  }
  set_log_level(parse_enum_option(log_levels(), vm["log-level"].as<std::string>(), command));
  return true;
}

}  // namespace qf::cli
