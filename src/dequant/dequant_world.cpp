// run_dequant_world: the world around run_dequant and its totals line (see dequant.hpp).
#include "core/log.hpp"
#include "core/progress.hpp"
#include "core/stop_signal.hpp"
#include "dequant/dequant.hpp"
#include "dist/mpi_communicator.hpp"
#include "dist/mpi_env.hpp"
#include "formats/staged_output.hpp"

namespace qf::pipeline {

void run_dequant_world(DequantOptions options, dist::BackendChoice backend,
                       const dist::MpiEnv& mpi) {
  options.backend = dist::resolve_backend(backend);
  if (options.backend == dist::ComputeBackend::kCuda) dist::select_cuda_device(mpi.local_rank());
  dist::MpiCommunicator comm(mpi, dist::CommunicatorOptions{});
  DequantReport report;
  try {
    report = run_dequant(options, comm);
  } catch (const Interrupted& e) {
    throw Interrupted(e.signal(),
                      "dequant: " + e.message() + ". Nothing was kept (" +
                          formats::StagedOutput::staging_dir_for(options.out_dir) +
                          " removed, " + options.out_dir + " not written); run the same command "
                          "again.",
                      e.reported_here());
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
}

}  // namespace qf::pipeline
