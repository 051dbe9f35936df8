// NcclComm and NcclCommunicator: NCCL collectives on device buffers, enqueued on a dedicated
// communication stream and ordered with the compute stream by events (llm.c zero.cuh).
// Compiled to nothing without QF_HAVE_CUDA.
#ifdef QF_HAVE_CUDA
#include "dist/nccl_communicator.hpp"

#include <mpi.h>

#include <algorithm>
#include <exception>
#include <memory>

#include "core/check.hpp"
#include "core/log.hpp"
#include "dist/mpi_env.hpp"

namespace qf::dist {
namespace {

ncclDataType_t nccl_type(ElemType type) {
  switch (type) {
    case ElemType::kF32:
      return ncclFloat32;
    case ElemType::kF64:
      return ncclFloat64;
    case ElemType::kI32:
      return ncclInt32;
    case ElemType::kI64:
      return ncclInt64;
    case ElemType::kU64:
      return ncclUint64;
    case ElemType::kU8:
      return ncclUint8;
  }
  QF_FAIL("unknown ElemType", static_cast<int>(type));
}

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::kSum ? ncclSum : ncclMax; }

int pick_device(const MpiEnv& mpi, int requested) {
  int n_devices = 0;
  QF_CUDA_CHECK(cudaGetDeviceCount(&n_devices), "rank", mpi.rank(), "counting CUDA devices");
  QF_CHECK(n_devices > 0, "rank", mpi.rank(), "on", mpi.hostname(), "sees no CUDA device");
  if (requested >= 0) {
    QF_CHECK(requested < n_devices, "rank", mpi.rank(), "asked for CUDA device", requested, "of",
             n_devices);
    return requested;
  }
  if (mpi.local_size() > n_devices) {
    log_warn("host ", mpi.hostname(), " runs ", mpi.local_size(), " ranks on ", n_devices,
             " CUDA devices: ranks share devices");
  }
  return mpi.local_rank() % n_devices;
}

}  // namespace

NcclComm::NcclComm(const MpiEnv& mpi, int device) : device_(device) {
  QF_CUDA_CHECK(cudaSetDevice(device), "rank", mpi.rank(), "selecting CUDA device", device);
  ncclUniqueId id{};
  if (mpi.rank() == 0) QF_NCCL_CHECK(ncclGetUniqueId(&id), "rank 0 creating the NCCL id");
  QF_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD), "rank", mpi.rank(),
               "broadcasting the NCCL unique id");
  QF_NCCL_CHECK(ncclCommInitRank(&comm_, mpi.world_size(), id, mpi.rank()), "rank", mpi.rank(),
                "of", mpi.world_size(), "ncclCommInitRank on device", device);
}

NcclComm::~NcclComm() {
  if (!comm_) return;
  if (std::uncaught_exceptions() > 0) {
    // Unwinding from an error: peers may never reach finalize; abort frees without waiting.
    const ncclResult_t rc = ncclCommAbort(comm_);
    if (rc != ncclSuccess) log_error("ncclCommAbort: ", ncclGetErrorString(rc));
    return;
  }
  ncclResult_t rc = ncclCommFinalize(comm_);
  if (rc != ncclSuccess) log_error("ncclCommFinalize: ", ncclGetErrorString(rc));
  rc = ncclCommDestroy(comm_);
  if (rc != ncclSuccess) log_error("ncclCommDestroy: ", ncclGetErrorString(rc));
}

// ---- NcclCommunicator ----------------------------------------------------------------------

NcclCommunicator::NcclCommunicator(const MpiEnv& mpi, const CommunicatorOptions& options)
    : Communicator(mpi.rank(), mpi.world_size()),
      comm_(mpi, pick_device(mpi, options.device)),
      compute_stream_(static_cast<cudaStream_t>(options.compute_stream)) {}

NcclCommunicator::~NcclCommunicator() {
  if (!comm_stream_.get()) return;
  const cudaError_t rc = cudaStreamSynchronize(comm_stream_.get());
  if (rc != cudaSuccess) {
    log_error("rank ", rank(),
              ": communication stream failed at teardown: ", cudaGetErrorString(rc));
  }
}

void NcclCommunicator::wait_for_compute(OpKind kind, const char* operation, const char* what) {
  QF_CUDA_CHECK(cudaEventRecord(compute_ready_.get(), compute_stream_), describe(operation, what),
                "recording the compute-stream event");
  QF_CUDA_CHECK(cudaStreamWaitEvent(comm_stream_.get(), compute_ready_.get(), 0),
                describe(operation, what), "ordering the comm stream after compute");
  // Recorded after the wait: the device time starts once this rank's inputs are ready, so it
  // holds the transfer and the wait for slower peers, not this rank's own compute.
  if (current_) {
    // The previous collective threw before its end event: it has no device time to read.
    free_ops_.push_back(std::move(in_flight_.back()));
    in_flight_.pop_back();
    current_ = nullptr;
  }
  collect_device_times(false);  // recycles the pairs of finished collectives
  std::unique_ptr<TimedOp> op;
  if (free_ops_.empty()) {
    op = std::make_unique<TimedOp>();
  } else {
    op = std::move(free_ops_.back());
    free_ops_.pop_back();
  }
  op->kind = kind;
  QF_CUDA_CHECK(cudaEventRecord(op->start.get(), comm_stream_.get()), describe(operation, what),
                "recording the timing start event");
  current_ = op.get();
  in_flight_.push_back(std::move(op));
}

void NcclCommunicator::signal_compute(const char* operation, const char* what) {
  if (current_) {
    QF_CUDA_CHECK(cudaEventRecord(current_->end.get(), comm_stream_.get()),
                  describe(operation, what), "recording the timing end event");
    current_ = nullptr;
  }
  QF_CUDA_CHECK(cudaEventRecord(comm_done_.get(), comm_stream_.get()), describe(operation, what),
                "recording the comm-stream event");
  QF_CUDA_CHECK(cudaStreamWaitEvent(compute_stream_, comm_done_.get(), 0),
                describe(operation, what), "ordering the compute stream after the collective");
}

void NcclCommunicator::collect_device_times(bool wait) {
  mark_device_timed();
  while (!in_flight_.empty() && in_flight_.front().get() != current_) {
    TimedOp& op = *in_flight_.front();
    if (wait) {
      QF_CUDA_CHECK(cudaEventSynchronize(op.end.get()), "rank", rank(),
                    "waiting for a collective's timing event");
    } else {
      const cudaError_t rc = cudaEventQuery(op.end.get());
      if (rc == cudaErrorNotReady) break;  // later ones are behind it on the same stream
      QF_CUDA_CHECK(rc, "rank", rank(), "querying a collective's timing event");
    }
    float ms = 0;
    QF_CUDA_CHECK(cudaEventElapsedTime(&ms, op.start.get(), op.end.get()), "rank", rank(),
                  "reading a collective's device time");
    device_stats(op.kind).device_seconds += double(ms) * 1e-3;
    free_ops_.push_back(std::move(in_flight_.front()));
    in_flight_.pop_front();
  }
}

void NcclCommunicator::do_allreduce(void* buf, size_t n_elems, ElemType type, ReduceOp op,
                                    const char* what) {
  wait_for_compute(OpKind::kAllreduce, "allreduce", what);
  QF_NCCL_CHECK(ncclAllReduce(buf, buf, n_elems, nccl_type(type), nccl_op(op), comm_.get(),
                              comm_stream_.get()),
                describe("allreduce", what), "(", elem_type_name(type), reduce_op_name(op), n_elems,
                "elements)");
  signal_compute("allreduce", what);
}

void NcclCommunicator::do_broadcast(void* buf, size_t n_bytes, int root, const char* what) {
  wait_for_compute(OpKind::kBroadcast, "broadcast", what);
  QF_NCCL_CHECK(ncclBroadcast(buf, buf, n_bytes, ncclUint8, root, comm_.get(), comm_stream_.get()),
                describe("broadcast", what), "(", n_bytes, "bytes from root", root, ")");
  signal_compute("broadcast", what);
}

void NcclCommunicator::do_allgather(const void* send, void* recv, size_t n_bytes_per_rank,
                                    const char* what) {
  wait_for_compute(OpKind::kAllgather, "allgather", what);
  // In place when send == recv + rank * n_bytes_per_rank, which NCCL accepts as is.
  QF_NCCL_CHECK(
      ncclAllGather(send, recv, n_bytes_per_rank, ncclUint8, comm_.get(), comm_stream_.get()),
      describe("allgather", what), "(", n_bytes_per_rank, "bytes per rank)");
  signal_compute("allgather", what);
}

void NcclCommunicator::do_allgatherv(const void* send, void* recv,
                                     const std::vector<size_t>& n_bytes_of_rank, const char* what) {
  wait_for_compute(OpKind::kAllgather, "allgatherv", what);
  QF_NCCL_CHECK(ncclGroupStart(), describe("allgatherv", what), "group start");
  size_t offset = 0;
  for (int root = 0; root < world_size(); ++root) {
    const size_t n_bytes = n_bytes_of_rank[root];
    char* slot = static_cast<char*>(recv) + offset;
    if (n_bytes > 0) {
      // The root's send buffer may differ from its slot: ncclBroadcast copies it there.
      const void* source = root == rank() ? send : slot;
      const ncclResult_t rc =
          ncclBroadcast(source, slot, n_bytes, ncclUint8, root, comm_.get(), comm_stream_.get());
      if (rc != ncclSuccess) ncclGroupEnd();
      QF_NCCL_CHECK(rc, describe("allgatherv", what), "(", n_bytes, "bytes from rank", root, ")");
    }
    offset += n_bytes;
  }
  QF_NCCL_CHECK(ncclGroupEnd(), describe("allgatherv", what), "group end");
  signal_compute("allgatherv", what);
}

void NcclCommunicator::do_broadcast_many(const std::vector<BroadcastPart>& parts,
                                         const char* what) {
  wait_for_compute(OpKind::kBroadcast, "broadcast_many", what);
  for (size_t first = 0; first < parts.size(); first += kMaxGroupOps) {
    const size_t last = std::min(parts.size(), first + kMaxGroupOps);
    QF_NCCL_CHECK(ncclGroupStart(), describe("broadcast_many", what), "group start");
    for (size_t i = first; i < last; ++i) {
      const BroadcastPart& p = parts[i];
      const ncclResult_t rc = ncclBroadcast(p.buf, p.buf, p.n_bytes, ncclUint8, p.root, comm_.get(),
                                            comm_stream_.get());
      if (rc != ncclSuccess) ncclGroupEnd();
      QF_NCCL_CHECK(rc, describe("broadcast_many", what), "(part", i, ",", p.n_bytes,
                    "bytes from root", p.root, ")");
    }
    QF_NCCL_CHECK(ncclGroupEnd(), describe("broadcast_many", what), "group end (parts", first, "to",
                  last - 1, ")");
  }
  signal_compute("broadcast_many", what);
}

void NcclCommunicator::do_barrier(const char* what) {
  do_synchronize(what);  // (not synchronize(): the wait counts as the barrier's time)
  QF_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD), describe("barrier", what));
}

void NcclCommunicator::copy_local(void* dst, const void* src, size_t n_bytes, const char* what) {
  QF_CUDA_CHECK(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyDeviceToDevice, comm_stream_.get()),
                describe("local copy", what));
}

void NcclCommunicator::do_synchronize(const char* what) {
  QF_CUDA_CHECK(cudaStreamSynchronize(comm_stream_.get()), describe("synchronize", what));
  collect_device_times(false);  // every pair is complete now: recycle them
}

}  // namespace qf::dist
#endif  // QF_HAVE_CUDA
