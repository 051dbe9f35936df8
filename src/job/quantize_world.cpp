// run_quantize_world: the world around run_quantize (see quantize_world.hpp).
#include "job/quantize_world.hpp"

#include <memory>

#include "core/log.hpp"
#include "core/progress_stream.hpp"
#include "dist/mpi_communicator.hpp"
#include "dist/mpi_env.hpp"
#include "job/quantize_summary.hpp"

namespace qf::pipeline {

QuantizeReport run_quantize_world(QuantizeOptions options, dist::BackendChoice backend,
                                  dist::CommChoice comm_choice, const dist::MpiEnv& mpi) {
  const ProgressStreamScope progress_stream(options.progress_json, "quantize");  // rank 0
  options.backend = dist::resolve_backend(backend);
  if (options.backend == dist::ComputeBackend::kCuda) dist::select_cuda_device(mpi.local_rank());
  dist::MpiCommunicator comm(mpi, dist::CommunicatorOptions{});
  // NCCL needs a GPU per rank; hosts may differ, so the ranks decide together.
  int64_t n_sharing_gpu = mpi.local_size() > dist::cuda_device_count() ? 1 : 0;
  comm.allreduce_counts(&n_sharing_gpu, 1, "ranks sharing a GPU");
  const dist::Backend comm_backend =
      dist::resolve_comm(comm_choice, options.backend, n_sharing_gpu == 0);
  // After MpiEnv (main), so destroyed before MPI_Finalize; only where a forward runs.
  std::unique_ptr<dist::Communicator> device_comm;
  if (comm_backend == dist::Backend::kNccl && !options.export_only && options.amax_file.empty()) {
    device_comm = dist::make_communicator(dist::Backend::kNccl, mpi);
    options.device_comm = device_comm.get();
    if (comm.rank() == 0) log_info("quantize: layer weights and input amax over NCCL");
  }
  const QuantizeReport report = run_quantize(options, comm);
  print_quantize_summary(report, options, comm, device_comm.get());
  return report;
}

}  // namespace qf::pipeline
