// quantforge entry point: picks the subcommand, sets up MPI for multi-rank jobs, and turns
// every failure into one clear message and a non-zero exit (MPI_Abort so no peer hangs).
#include <cstring>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "core/check.hpp"
#include "core/log.hpp"
#include "core/stop_signal.hpp"
#include "dist/mpi_env.hpp"

#ifndef QF_VERSION
#define QF_VERSION "dev"
#endif

namespace qf::cli {

namespace {
dist::MpiEnv* g_mpi_env = nullptr;
}  // namespace

const dist::MpiEnv& mpi_env() {
  QF_CHECK(g_mpi_env != nullptr, "internal: this command did not initialise MPI");
  return *g_mpi_env;
}

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"make-tiny", "write a synthetic DeepSeek V4 checkpoint (native FP8/FP4 or BF16)",
       cmd_make_tiny, false},
      {"dequant", "native FP8/FP4 checkpoint -> exact BF16 checkpoint, on any number of ranks",
       cmd_dequant, true},
      {"quantize", "calibrate + quantize to NVFP4 + export (ModelOpt format), resumable",
       cmd_quantize, true},
      {"inspect", "print the tensor table, dtype totals and config of a checkpoint", cmd_inspect,
       false},
      {"plan", "dry run: which rank owns what, bytes and memory per rank, time estimate", cmd_plan,
       false},
      {"validate", "check an exported NVFP4 checkpoint against its source", cmd_validate, false},
      {"eval", "accuracy of an export against its source: KL, top-1, perplexity, worst modules",
       cmd_eval, true},
      {"status", "where a quantize run is, what --resume would do, whether OUT is good (read-only)",
       cmd_status, false},
      {"calib-data", "tokenize JSONL text with a tokenizer.json into calibration samples",
       cmd_calib_data, false},
  };
  return table;
}

namespace {
void print_usage(std::ostream& out) {
  out << "quantforge " << QF_VERSION
      << ": quantize DeepSeek V4 checkpoints to NVFP4 on one or many GPUs (MPI + NCCL)\n\n"
      << "usage: quantforge <command> [options]   (quantforge <command> --help for details)\n\n"
      << "commands:\n";
  for (const auto& command : commands()) {
    out << "  " << command.name << std::string(12 - std::strlen(command.name), ' ')
        << command.summary << "\n";
  }
}
}  // namespace
}  // namespace qf::cli

int main(int argc, char** argv) {
  using namespace qf::cli;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    print_usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::cout << "quantforge " << QF_VERSION << std::endl;
    return 0;
  }
  const Command* command = nullptr;
  for (const auto& candidate : commands()) {
    if (argv[1] == std::string(candidate.name)) command = &candidate;
  }
  if (!command) {
    std::cerr << "quantforge: unknown command '" << argv[1] << "'\n\n";
    print_usage(std::cerr);
    return 2;
  }
  const Args args(argv + 2, argv + argc);
  std::unique_ptr<qf::dist::MpiEnv> mpi;
  try {
    if (command->needs_mpi) {
      mpi = std::make_unique<qf::dist::MpiEnv>(&argc, &argv);
      g_mpi_env = mpi.get();
    }
    return command->run(args);
  } catch (const UsageError& e) {
    std::cerr << "quantforge " << e.command << ": " << e.message << "\n"
              << "try 'quantforge " << e.command << " --help'" << std::endl;
    return 2;
  } catch (const qf::Interrupted& e) {
    // A stop signal reached the job; every rank stopped at a safe point. The job's message
    // says what was kept and how to go on.
    if (e.reported_here()) qf::log_error(e.message());
    return qf::exit_status_for_signal(e.signal());
  } catch (const qf::CollectiveError& e) {
    // Every rank stops here together: no abort needed, only the reporting rank prints.
    if (e.reported_here()) qf::log_error(e.what());
    return 1;
  } catch (const qf::Error& e) {
    qf::log_error(e.what());
    if (mpi && mpi->world_size() > 1) qf::dist::MpiEnv::abort_all(1);
    return 1;
  } catch (const std::exception& e) {
    qf::log_error("unexpected failure: ", e.what());
    if (mpi && mpi->world_size() > 1) qf::dist::MpiEnv::abort_all(1);
    return 1;
  }
}
