// run_dequant_world: the world around run_dequant and its totals line (see dequant.hpp).
#include <unistd.h>

#include <chrono>

#include "core/elapsed.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "core/progress_stream.hpp"
#include "core/stop_signal.hpp"
#include "dequant/dequant.hpp"
#include "dist/mpi_communicator.hpp"
#include "dist/mpi_env.hpp"
#include "formats/staged_output.hpp"

namespace qf::pipeline {

void run_dequant_world(DequantOptions options, dist::BackendChoice backend,
                       const dist::MpiEnv& mpi) {
  const ProgressStreamScope progress(options.progress_json, "dequant");  // rank 0 only
  const auto start = std::chrono::steady_clock::now();
  options.backend = dist::resolve_backend(backend);
  if (options.backend == dist::ComputeBackend::kCuda) dist::select_cuda_device(mpi.local_rank());
  dist::MpiCommunicator comm(mpi, dist::CommunicatorOptions{});
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) host[0] = '?';
  progress_stream::emit("start", {{"command", "dequant"},
                                  {"mode", "run"},
                                  {"world_size", comm.world_size()},
                                  {"pid", static_cast<int64_t>(::getpid())},
                                  {"host", host},
                                  {"in", options.in_dir},
                                  {"out", options.out_dir}});
  DequantReport report;
  try {
    report = run_dequant(options, comm);
  } catch (const Interrupted& e) {
    progress_stream::emit(
        "end", {{"status", "failed"}, {"seconds", seconds_since(start)}, {"message", e.message()}});
    throw Interrupted(e.signal(),
                      "dequant: " + e.message() + ". Nothing was kept (" +
                          formats::StagedOutput::staging_dir_for(options.out_dir) + " removed, " +
                          options.out_dir +
                          " not written); run the same command "
                          "again.",
                      e.reported_here());
  } catch (const std::exception& e) {
    progress_stream::emit(
        "end", {{"status", "failed"}, {"seconds", seconds_since(start)}, {"message", e.what()}});
    throw;
  }
  uint64_t totals[4] = {report.bytes_read, report.bytes_written, report.n_tensors_converted,
                        report.n_tensors_copied};
  comm.allreduce_counts(totals, 4, "dequant totals");
  log_info("dequant: ", totals[2], " tensors converted, ", totals[3], " copied; read ",
           ProgressMeter::format_bytes(double(totals[0])), ", wrote ",
           ProgressMeter::format_bytes(double(totals[1])), " in ",
           ProgressMeter::format_seconds(report.seconds), " (",
           ProgressMeter::format_bytes(double(totals[0] + totals[1]) / report.seconds), "/s) -> ",
           options.out_dir);
  progress_stream::phase("done");
  progress_stream::emit("end", {{"status", "ok"}, {"seconds", seconds_since(start)}});
}

}  // namespace qf::pipeline
