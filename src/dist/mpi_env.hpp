// RAII for MPI_Init/MPI_Finalize. Declare first in main so it is destroyed last.
// Owns: MPI life cycle, the process identity used by logs and errors. Does not own: NCCL.
#pragma once
#include <string>

namespace qf::dist {

class MpiEnv {
 public:
  // Initialises MPI (thread level FUNNELED) unless already initialised, and records rank and
  // world size with qf::set_process_rank. Errors on MPI calls return instead of aborting, so
  // QF_MPI_CHECK can report them.
  MpiEnv(int* argc, char*** argv);
  ~MpiEnv();
  MpiEnv(const MpiEnv&) = delete;
  MpiEnv& operator=(const MpiEnv&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  // Ranks on this host and this rank's index among them (from hostname hashes, nccl-tests
  // getHostHash), used to pick the GPU.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  const std::string& hostname() const { return hostname_; }

  // Stops every rank (after an error on one): peers never hang inside a collective.
  [[noreturn]] static void abort_all(int exit_code);
  static bool active();

 private:
  bool owns_init_ = false;
  int rank_ = 0;
  int world_size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  std::string hostname_;
};

}  // namespace qf::dist
