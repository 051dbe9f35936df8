// The end-of-job lines of `quantize` on rank 0: the totals (the report's sums, reused) and the
// summary table (phases, throughput, communication, per-rank bytes and memory), which
// bench/bench_multi_rank.sh parses. Owns only those lines.
#pragma once
#include "dist/communicator.hpp"
#include "job/quantize_job.hpp"

namespace qf::pipeline {

// Collective over `comm` (one allgather of each rank's figures, taken after its communication
// statistics). `device_comm`: the NCCL communicator of the run, or null.
void print_quantize_summary(const QuantizeReport& report, const QuantizeOptions& options,
                            dist::Communicator& comm, dist::Communicator* device_comm);

}  // namespace qf::pipeline
