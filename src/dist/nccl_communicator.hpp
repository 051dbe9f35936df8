// NcclComm (RAII for one ncclComm_t) and NcclCommunicator (the Communicator on device buffers).
// Owns: the NCCL unique-id broadcast, the communication stream and the events that order it
// with the compute stream (llm.c zero.cuh). Does not own: MPI life cycle (MpiEnv must outlive
// both), device memory, or the compute stream. CUDA builds only (QF_HAVE_CUDA).
#pragma once
#ifndef QF_HAVE_CUDA
#error "nccl_communicator.hpp needs a CUDA build (QF_HAVE_CUDA)"
#endif
#include <cuda_runtime.h>
#include <nccl.h>

#include <deque>
#include <vector>

#include "core/cuda_raii.hpp"
#include "dist/communicator.hpp"

namespace qf::dist {
// One NCCL communicator over all MPI ranks. Rank 0 creates the unique id, MPI broadcasts it,
// every rank calls ncclCommInitRank on the current CUDA device. Declare after MpiEnv so it is
// destroyed before MPI_Finalize. The destructor calls ncclCommFinalize + ncclCommDestroy, or
// ncclCommAbort when
// the stack is unwinding from an error (destroy could wait for peers that will never come).
class NcclComm {
 public:
  NcclComm(const MpiEnv& mpi, int device);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
  ncclComm_t get() const { return comm_; }
  int device() const { return device_; }

 private:
  ncclComm_t comm_ = nullptr;
  int device_ = -1;
};

class NcclCommunicator final : public Communicator {
 public:
  // Picks the device (options.device, or local_rank % device count), makes it current,
  // creates the communicator, a non-blocking communication stream and one ordering event.
  NcclCommunicator(const MpiEnv& mpi, const CommunicatorOptions& options);
  ~NcclCommunicator() override;  // waits for the comm stream (logs errors); members free

  Backend backend() const override { return Backend::kNccl; }
  bool device_buffers() const override { return true; }

  int device() const { return comm_.device(); }
  ncclComm_t nccl() const { return comm_.get(); }
  cudaStream_t comm_stream() const { return comm_stream_.get(); }
  cudaStream_t compute_stream() const { return compute_stream_; }
  // Later collectives are ordered after / before work on this stream instead.
  void set_compute_stream(cudaStream_t stream) { compute_stream_ = stream; }
  static constexpr size_t kMaxGroupOps = 1024;

 protected:
  void do_allreduce(void* buf, size_t n_elems, ElemType type, ReduceOp op,
                    const char* what) override;
  void do_broadcast(void* buf, size_t n_bytes, int root, const char* what) override;
  void do_allgather(const void* send, void* recv, size_t n_bytes_per_rank,
                    const char* what) override;
  // One ncclBroadcast per rank inside ncclGroupStart/End.
  void do_allgatherv(const void* send, void* recv, const std::vector<size_t>& n_bytes_of_rank,
                     const char* what) override;
  // ncclBroadcasts in groups of at most kMaxGroupOps (NCCL allows 2048 calls per group).
  void do_broadcast_many(const std::vector<BroadcastPart>& parts, const char* what) override;
  void do_barrier(const char* what) override;
  void do_synchronize(const char* what) override;  // waits for the communication stream
  // Reads the timing events of finished collectives (all of them, waiting, when `wait`).
  void collect_device_times(bool wait) override;
  void copy_local(void* dst, const void* src, size_t n_bytes, const char* what) override;

 private:
  // compute stream -> comm stream (before enqueueing) and comm stream -> compute stream
  // (after), so the caller's stream sees the result without a host synchronization. They also
  // record a timing event pair around the collective on the comm stream, for stats().
  void wait_for_compute(OpKind kind, const char* operation, const char* what);
  void signal_compute(const char* operation, const char* what);

  // Device time accounting: a pair of timing events per collective in flight, recycled once
  // read. The host time of an NCCL call is only the enqueue; these measure the stream.
  struct TimedOp {
    OpKind kind;
    CudaEvent start{0};
    CudaEvent end{0};
  };
  std::deque<std::unique_ptr<TimedOp>> in_flight_;  // oldest first (one stream: in order)
  std::vector<std::unique_ptr<TimedOp>> free_ops_;
  TimedOp* current_ = nullptr;  // between wait_for_compute and signal_compute

  // Declaration order = construction order; destruction runs backwards (events, stream, comm).
  NcclComm comm_;
  CudaStream comm_stream_;
  CudaEvent compute_ready_;                // recorded on the compute stream
  CudaEvent comm_done_;                    // recorded on the comm stream
  cudaStream_t compute_stream_ = nullptr;  // not owned; nullptr = legacy default stream
};

}  // namespace qf::dist
