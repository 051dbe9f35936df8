// quantize over every rank of an MPI world, as `quantforge quantize` runs it: each rank's backend
// and GPU, the communicators (MPI, and NCCL for --comm), run_quantize, the end-of-job lines.
// Owns that setup. Does not own the phases (quantize_job) or the summary (quantize_summary).
#pragma once
#include "dist/compute_backend.hpp"
#include "job/quantize_job.hpp"

namespace qf::dist {
class MpiEnv;
}

namespace qf::pipeline {

// Collective over every rank of `mpi` (all call it with the same arguments). Fills
// options.backend from `backend` (each rank on GPU local_rank % count) and options.device_comm
// from `comm`, runs the job and prints the totals and the summary on rank 0.
QuantizeReport run_quantize_world(QuantizeOptions options, dist::BackendChoice backend,
                                  dist::CommChoice comm, const dist::MpiEnv& mpi);

}  // namespace qf::pipeline
