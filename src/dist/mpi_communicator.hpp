// MpiCommunicator: the Communicator on host buffers over MPI (CI, GPU-less machines, the CPU
// backend). Owns: a private duplicate of MPI_COMM_WORLD and int-count chunking of large
// messages. Does not own: MPI_Init/Finalize (MpiEnv, which must outlive this object).
#pragma once
#include <mpi.h>

#include "dist/communicator.hpp"

namespace qf::dist {

class MpiCommunicator final : public Communicator {
 public:
  // Collective over MPI_COMM_WORLD (MPI_Comm_dup), so our traffic never matches anyone else's.
  MpiCommunicator(const MpiEnv& mpi, const CommunicatorOptions& options);
  ~MpiCommunicator() override;  // MPI_Comm_free unless MPI is already finalized

  Backend backend() const override { return Backend::kMpi; }
  bool device_buffers() const override { return false; }
  MPI_Comm get() const { return comm_; }

 protected:
  void do_allreduce(void* buf, size_t n_elems, ElemType type, ReduceOp op,
                    const char* what) override;
  void do_broadcast(void* buf, size_t n_bytes, int root, const char* what) override;
  void do_allgather(const void* send, void* recv, size_t n_bytes_per_rank,
                    const char* what) override;
  void do_barrier(const char* what) override;
  void do_synchronize(const char*) override {}  // every operation is complete on return
  void copy_local(void* dst, const void* src, size_t n_bytes, const char* what) override;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  size_t max_chunk_bytes_;  // <= INT_MAX: MPI counts are int
};

}  // namespace qf::dist
