// Communicator: the collectives quantforge makes, behind one interface with an MPI backend
// (host buffers) and an NCCL backend (device buffers). Owns: the operation contracts, argument
// checks, the named collectives (allreduce_amax, allreduce_counts), the count / bytes / time
// accounting of every collective (stats()). Does not own: MPI life cycle (MpiEnv), the
// ownership plan, or which collective runs when (the pipeline).
//
// Contract shared by every backend and every operation:
//   - Collective: every rank calls the same operations in the same order with the same sizes,
//     root and element type. Argument errors (bad root, overflowing sizes) are detected on every
//     rank alike before any communication, so they fail everywhere instead of hanging.
//   - `what` names the operation in errors and logs ("layer 7 input amax"). Every error carries
//     the rank, the world size, the backend and `what`.
//   - Buffers: host memory for Backend::kMpi, device memory (on the communicator's device) for
//     Backend::kNccl. device_buffers() says which.
//   - Completion: the MPI backend returns when the operation is complete. The NCCL backend
//     enqueues on its communication stream, ordered after all work already queued on the
//     compute stream and before any work queued there afterwards (llm.c zero.cuh events); the
//     host must call synchronize() before touching the buffers with the CPU.
//
// Liveness: a dead or stuck peer blocks MPI collectives forever (MPI has no timeouts) and NCCL
// kernels spin. Today main() turns any error into MPI_Abort, which kills every rank, but a rank
// that dies without an error (OOM kill, node loss) relies on mpirun/Slurm tearing the job down.
// A watchdog (non-blocking ncclCommInitRankConfig + ncclCommGetAsyncError polling with a
// deadline, then ncclCommAbort; for MPI a heartbeat thread) is issue "dist-liveness".
#pragma once
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qf::dist {

class MpiEnv;

// Element types of reductions. kU8 doubles as "bytes" for byte-sized payloads.
enum class ElemType { kF32, kF64, kI32, kI64, kU64, kU8 };
enum class ReduceOp { kSum, kMax };
enum class Backend { kMpi, kNccl };

size_t elem_n_bytes(ElemType type);
const char* elem_type_name(ElemType type);  // "f32", ...
const char* reduce_op_name(ReduceOp op);    // "sum" | "max"
const char* backend_name(Backend backend);  // "mpi" | "nccl"
// "mpi" | "nccl"; throws qf::Error listing the valid names.
Backend parse_backend(const std::string& name);
// Whether this build has the NCCL backend (QF_HAVE_CUDA).
bool backend_available(Backend backend);

// Communication accounting (Communicator::stats()), per kind of operation: broadcast counts
// broadcast and broadcast_many, allgather counts allgather and allgatherv.
enum class OpKind { kAllreduce, kBroadcast, kAllgather, kBarrier };
constexpr int kNumOpKinds = 4;
const char* op_kind_name(OpKind kind);  // "allreduce" | "broadcast" | "allgather" | "barrier"

struct OpStats {
  uint64_t count = 0;  // calls that reached the backend (empty ones return early, uncounted)
  // Payload: allreduce n_elems x element size, broadcast n_bytes (per part for broadcast_many),
  // allgather(v) the bytes of all ranks together (what every rank ends up holding).
  uint64_t bytes = 0;
  // Host wall time inside the calls on this rank. MPI: the whole operation, including waiting
  // for the slowest rank to arrive (load imbalance shows up here). NCCL: only the enqueue.
  double host_seconds = 0;
  // NCCL only: the time the collectives occupied the communication stream, from CUDA events
  // recorded around them (start: once the stream has waited for the compute stream, so waiting
  // for peers is included, waiting for this rank's own compute is not). 0 for MPI.
  double device_seconds = 0;
};

struct CommStats {
  std::array<OpStats, kNumOpKinds> ops{};
  // Host time in synchronize() (NCCL: waiting for the communication stream; MPI: 0).
  double synchronize_seconds = 0;
  bool device_timed = false;  // device_seconds are measured (NCCL)

  const OpStats& op(OpKind kind) const { return ops[static_cast<int>(kind)]; }
  // The time attributable to communication on this rank: the host seconds of every operation
  // (MPI: all of it; NCCL: the enqueues and the barriers) + the device seconds (NCCL). Not
  // synchronize_seconds, which overlap the device seconds. NCCL stream time counts although
  // this rank's compute may run meanwhile: an upper bound on what communication costs.
  double seconds() const;
  // "allreduce 12 / 3.1 KB / 0.01 s, broadcast ..., barrier ...[, synchronize 0.2 s]" and, when
  // wall_seconds > 0, ", share of wall time 3.2%".
  std::string describe(double wall_seconds) const;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  virtual Backend backend() const = 0;
  // True when buffers must be device pointers (NCCL), false for host pointers (MPI).
  virtual bool device_buffers() const = 0;

  // ---- raw collectives (the pipeline calls the named ones below where one fits) ----------
  // In place: buf[i] = op over ranks of buf[i], for n_elems elements of `type`.
  void allreduce(void* buf, size_t n_elems, ElemType type, ReduceOp op, const char* what);
  // buf (n_bytes) on every rank = buf on `root`.
  void broadcast(void* buf, size_t n_bytes, int root, const char* what);
  // recv[r * n_bytes_per_rank ...] = send of rank r; recv holds world_size * n_bytes_per_rank.
  // send must not overlap recv, except send == recv + rank * n_bytes_per_rank (in place).
  void allgather(const void* send, void* recv, size_t n_bytes_per_rank, const char* what);
  // Like allgather with per-rank sizes: rank r contributes n_bytes_of_rank[r] bytes, placed
  // back to back in rank order in recv. n_bytes_of_rank must be identical on every rank; send
  // holds n_bytes_of_rank[rank()] bytes. Implemented as one broadcast per rank.
  void allgatherv(const void* send, void* recv, const std::vector<size_t>& n_bytes_of_rank,
                  const char* what);
  // Several broadcasts, each from its own root, as one operation: parts[i].buf (n_bytes) on
  // every rank = parts[i].buf on parts[i].root. Every rank passes the same sizes and roots in
  // the same order; the buffers must not overlap. NCCL runs them as grouped ncclBroadcasts (at
  // most kMaxGroupOps per group), so they progress together instead of one after another.
  struct BroadcastPart {
    void* buf = nullptr;
    size_t n_bytes = 0;
    int root = 0;
  };
  void broadcast_many(const std::vector<BroadcastPart>& parts, const char* what);
  // Returns on each rank once every rank has called it (and, for NCCL, every operation this
  // rank enqueued has completed).
  void barrier(const char* what);
  // Waits for every operation this rank issued (no-op for MPI). Timed into stats().
  void synchronize(const char* what);

  // What this communicator has spent since construction (see OpStats). Not const: NCCL first
  // waits for the timing events of collectives still in flight and adds their device time.
  // Called on one rank alone, it communicates nothing.
  CommStats stats();

  // ---- named collectives (DESIGN.md; STYLE.md §10) ---------------------------------------
  // Calibration input/weight amax: MAX over ranks of n non-negative f32 values, where 0 means
  // "this rank did not see it" (so a rank that saw no token of an expert contributes nothing
  // and never blocks). Host buffers are checked for NaN/negative values first.
  void allreduce_amax(float* amax, size_t n, const char* what);
  // Token/row counters: SUM over ranks.
  void allreduce_counts(int64_t* counts, size_t n, const char* what);
  void allreduce_counts(uint64_t* counts, size_t n, const char* what);

 protected:
  Communicator(int rank, int world_size);
  // Backends implement these; arguments are already validated (non-zero sizes, valid root,
  // non-null buffers).
  virtual void do_allreduce(void* buf, size_t n_elems, ElemType type, ReduceOp op,
                            const char* what) = 0;
  virtual void do_broadcast(void* buf, size_t n_bytes, int root, const char* what) = 0;
  virtual void do_allgather(const void* send, void* recv, size_t n_bytes_per_rank,
                            const char* what) = 0;
  // Default: one broadcast per rank; NCCL overrides to group them.
  virtual void do_allgatherv(const void* send, void* recv,
                             const std::vector<size_t>& n_bytes_of_rank, const char* what);
  // Default: one broadcast after another; NCCL overrides to group them. Parts are validated
  // and non-empty.
  virtual void do_broadcast_many(const std::vector<BroadcastPart>& parts, const char* what);
  virtual void do_barrier(const char* what) = 0;
  virtual void do_synchronize(const char* what) = 0;
  // NCCL: adds the device time of finished collectives to device_stats(); wait = true waits for
  // every one still in flight. Default: nothing to collect.
  virtual void collect_device_times(bool wait) { (void)wait; }
  // For backends that measure device time.
  OpStats& device_stats(OpKind kind) { return stats_.ops[static_cast<int>(kind)]; }
  void mark_device_timed() { stats_.device_timed = true; }
  // dst = src on this rank's memory (host or device, as device_buffers()); n_bytes > 0.
  virtual void copy_local(void* dst, const void* src, size_t n_bytes, const char* what) = 0;
  // "rank 2/4 mpi allreduce 'layer 3 amax'": the prefix of every error message.
  std::string describe(const char* operation, const char* what) const;

 private:
  using Clock = std::chrono::steady_clock;
  // Counts the call and adds the host seconds since `start`.
  void account(OpKind kind, uint64_t bytes, Clock::time_point start);

  int rank_ = 0;
  int world_size_ = 1;
  CommStats stats_;
};

// Backend-specific settings; the MPI backend uses only max_chunk_bytes.
struct CommunicatorOptions {
  // MPI counts are int: messages are split into pieces of at most this many bytes. Tests set
  // it tiny to exercise the chunked paths.
  size_t max_chunk_bytes = size_t{1} << 30;
  // NCCL: the CUDA device (-1: local_rank % device count) and the compute stream
  // (a cudaStream_t; nullptr = the legacy default stream) that collectives are ordered with.
  int device = -1;
  void* compute_stream = nullptr;
};

// The communicator for `backend` over all ranks of `mpi`. Collective over MPI_COMM_WORLD
// (NCCL: the unique id is broadcast from rank 0). Throws if the backend is not built in.
std::unique_ptr<Communicator> make_communicator(Backend backend, const MpiEnv& mpi,
                                                const CommunicatorOptions& options = {});

}  // namespace qf::dist
