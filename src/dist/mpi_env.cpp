// MPI life cycle and local-rank discovery.
#include "dist/mpi_env.hpp"

#include <mpi.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/check.hpp"
#include "core/cpu_affinity.hpp"
#include "core/log.hpp"

namespace qf::dist {
namespace {
uint64_t host_hash(const std::string& text) {
  uint64_t hash = 5381;  // djb2, as nccl-tests getHostHash
  for (const char c : text) hash = ((hash << 5) + hash) ^ static_cast<unsigned char>(c);
  return hash;
}
}  // namespace

MpiEnv::MpiEnv(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    QF_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init");
    owns_init_ = true;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  QF_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  QF_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size_), "MPI_Comm_size");
  set_process_rank(rank_, world_size_);

  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  hostname_ = host;
  std::vector<uint64_t> hashes(world_size_);
  uint64_t mine = host_hash(hostname_);
  QF_MPI_CHECK(
      MPI_Allgather(&mine, 1, MPI_UINT64_T, hashes.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD),
      "all-gather of host hashes");
  local_rank_ = 0;
  local_size_ = 0;
  for (int r = 0; r < world_size_; ++r) {
    if (hashes[r] != mine) continue;
    if (r < rank_) ++local_rank_;
    ++local_size_;
  }
  // Open MPI binds each rank to one core by default for 2 ranks or fewer: every thread of the
  // rank (reads, commits, export, CPU forward) then shares it. Said once (rank 0). Not under
  // srun with --cpus-per-task: that binding is the allocation the user asked for.
  const int allowed = allowed_cpu_count(), online = online_cpu_count();
  const bool slurm_binding = std::getenv("SLURM_CPUS_PER_TASK") != nullptr;
  if (local_rank_ == 0 && !slurm_binding && allowed < online &&
      int64_t{allowed} * local_size_ < online) {
    log_warn("rank ", rank_, " may run on ", allowed, " of this host's ", online,
             " CPU cores (mpirun binds ranks to cores by default): its I/O, conversion and CPU "
             "threads share them. Launch with `mpirun --bind-to none` (launch/mpirun_node.sh and "
             "launch/quantforge.sbatch do) or a wider binding.");
  }
}

MpiEnv::~MpiEnv() {
  if (!owns_init_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) {
    const int rc = MPI_Finalize();
    if (rc != MPI_SUCCESS) log_error("MPI_Finalize failed with code ", rc);
  }
}

bool MpiEnv::active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

void MpiEnv::abort_all(int exit_code) {
  if (active()) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

}  // namespace qf::dist
