// Communicator: argument checks shared by all backends, the named collectives, the factory.
// Does not own: any library call (mpi_communicator.cpp, nccl_communicator.cpp).
#include "dist/communicator.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/check.hpp"
#include "core/elapsed.hpp"
#include "core/enum_table.hpp"
#include "core/progress.hpp"
#include "dist/mpi_communicator.hpp"
#include "dist/mpi_env.hpp"
#ifdef QF_HAVE_CUDA
#include "dist/nccl_communicator.hpp"
#endif

namespace qf::dist {

size_t elem_n_bytes(ElemType type) {
  switch (type) {
    case ElemType::kF32:
      return 4;
    case ElemType::kF64:
      return 8;
    case ElemType::kI32:
      return 4;
    case ElemType::kI64:
      return 8;
    case ElemType::kU64:
      return 8;
    case ElemType::kU8:
      return 1;
  }
  QF_FAIL("unknown ElemType", static_cast<int>(type));
}

const char* elem_type_name(ElemType type) {
  switch (type) {
    case ElemType::kF32:
      return "f32";
    case ElemType::kF64:
      return "f64";
    case ElemType::kI32:
      return "i32";
    case ElemType::kI64:
      return "i64";
    case ElemType::kU64:
      return "u64";
    case ElemType::kU8:
      return "u8";
  }
  return "?";
}

const char* reduce_op_name(ReduceOp op) { return op == ReduceOp::kSum ? "sum" : "max"; }

namespace {
const EnumTable<Backend>& backends() {
  static const EnumTable<Backend> table("communication backend",
                                        {{"mpi", Backend::kMpi, "host buffers, MPI"},
                                         {"nccl", Backend::kNccl, "device buffers, NCCL"}});
  return table;
}
}  // namespace

const char* backend_name(Backend backend) { return backends().name(backend); }

Backend parse_backend(const std::string& name) { return backends().parse(name); }

bool backend_available(Backend backend) {
#ifdef QF_HAVE_CUDA
  (void)backend;
  return true;
#else
  return backend == Backend::kMpi;
#endif
}

const char* op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::kAllreduce:
      return "allreduce";
    case OpKind::kBroadcast:
      return "broadcast";
    case OpKind::kAllgather:
      return "allgather";
    case OpKind::kBarrier:
      return "barrier";
  }
  return "?";
}

double CommStats::seconds() const {
  // synchronize_seconds are left out: the host waits there for collectives whose stream time
  // device_seconds already holds.
  double total = 0;
  for (const OpStats& o : ops) {
    // NCCL: enqueue (host) + stream (device) time; barriers, a stream sync + MPI_Barrier on
    // the host, have no device time. MPI: device_seconds are 0.
    total += o.host_seconds + o.device_seconds;
  }
  return total;
}

std::string CommStats::describe(double wall_seconds) const {
  std::string text;
  char buf[160];
  for (int k = 0; k < kNumOpKinds; ++k) {
    const OpStats& o = ops[k];
    const bool barrier = static_cast<OpKind>(k) == OpKind::kBarrier;
    if (barrier) {
      std::snprintf(buf, sizeof(buf), "%s %llu / %.3f s", op_kind_name(static_cast<OpKind>(k)),
                    static_cast<unsigned long long>(o.count), o.host_seconds);
    } else if (device_timed) {
      std::snprintf(buf, sizeof(buf), "%s %llu / %s / %.3f s on the GPU (%.3f s enqueue)",
                    op_kind_name(static_cast<OpKind>(k)), static_cast<unsigned long long>(o.count),
                    ProgressMeter::format_bytes(double(o.bytes)).c_str(), o.device_seconds,
                    o.host_seconds);
    } else {
      std::snprintf(buf, sizeof(buf), "%s %llu / %s / %.3f s", op_kind_name(static_cast<OpKind>(k)),
                    static_cast<unsigned long long>(o.count),
                    ProgressMeter::format_bytes(double(o.bytes)).c_str(), o.host_seconds);
    }
    text += (k ? ", " : "") + std::string(buf);
  }
  if (device_timed) {
    std::snprintf(buf, sizeof(buf), ", synchronize %.3f s", synchronize_seconds);
    text += buf;
  }
  if (wall_seconds > 0) {
    std::snprintf(buf, sizeof(buf), ", share of wall time %.1f%%",
                  100.0 * seconds() / wall_seconds);
    text += buf;
  }
  return text;
}

Communicator::Communicator(int rank, int world_size) : rank_(rank), world_size_(world_size) {
  QF_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "invalid rank", rank, "of",
           world_size);
}

void Communicator::account(OpKind kind, uint64_t bytes, Clock::time_point start) {
  OpStats& o = stats_.ops[static_cast<int>(kind)];
  ++o.count;
  o.bytes += bytes;
  o.host_seconds += seconds_since(start);
}

CommStats Communicator::stats() {
  collect_device_times(true);
  return stats_;
}

void Communicator::synchronize(const char* what) {
  const auto start = Clock::now();
  do_synchronize(what);
  stats_.synchronize_seconds += seconds_since(start);
}

std::string Communicator::describe(const char* operation, const char* what) const {
  return str_cat("rank ", rank_, "/", world_size_, " ", backend_name(backend()), " ", operation,
                 " '", what ? what : "?", "'");
}

// ---- raw collectives: validate, then hand to the backend ----------------------------------

void Communicator::allreduce(void* buf, size_t n_elems, ElemType type, ReduceOp op,
                             const char* what) {
  if (n_elems == 0) return;
  QF_CHECK(buf != nullptr, describe("allreduce", what), ": null buffer for", n_elems, "elements");
  QF_CHECK(n_elems <= std::numeric_limits<size_t>::max() / elem_n_bytes(type),
           describe("allreduce", what), ":", n_elems, elem_type_name(type),
           "elements overflow size_t");
  const auto start = Clock::now();
  do_allreduce(buf, n_elems, type, op, what);
  account(OpKind::kAllreduce, n_elems * elem_n_bytes(type), start);
}

void Communicator::broadcast(void* buf, size_t n_bytes, int root, const char* what) {
  QF_CHECK(root >= 0 && root < world_size_, describe("broadcast", what), ": root", root,
           "outside [0,", world_size_, ")");
  if (n_bytes == 0) return;
  QF_CHECK(buf != nullptr, describe("broadcast", what), ": null buffer for", n_bytes, "bytes");
  const auto start = Clock::now();
  do_broadcast(buf, n_bytes, root, what);
  account(OpKind::kBroadcast, n_bytes, start);
}

void Communicator::allgather(const void* send, void* recv, size_t n_bytes_per_rank,
                             const char* what) {
  if (n_bytes_per_rank == 0) return;
  QF_CHECK(send != nullptr && recv != nullptr, describe("allgather", what), ": null buffer");
  QF_CHECK(n_bytes_per_rank <= std::numeric_limits<size_t>::max() / world_size_,
           describe("allgather", what), ":", n_bytes_per_rank, "bytes per rank overflow size_t");
  // Overlap is allowed only as the in-place form (send is this rank's slot of recv).
  const auto* send_begin = static_cast<const char*>(send);
  const auto* recv_begin = static_cast<const char*>(recv);
  const char* own_slot = recv_begin + rank_ * n_bytes_per_rank;
  const bool overlaps = send_begin < recv_begin + world_size_ * n_bytes_per_rank &&
                        recv_begin < send_begin + n_bytes_per_rank;
  QF_CHECK(!overlaps || send_begin == own_slot, describe("allgather", what),
           ": send overlaps recv but is not this rank's slot (in-place form)");
  const auto start = Clock::now();
  do_allgather(send, recv, n_bytes_per_rank, what);
  account(OpKind::kAllgather, n_bytes_per_rank * world_size_, start);
}

void Communicator::allgatherv(const void* send, void* recv,
                              const std::vector<size_t>& n_bytes_of_rank, const char* what) {
  QF_CHECK(static_cast<int>(n_bytes_of_rank.size()) == world_size_, describe("allgatherv", what),
           ": got", n_bytes_of_rank.size(), "sizes for", world_size_, "ranks");
  size_t n_bytes_total = 0;
  for (const size_t n : n_bytes_of_rank) {
    QF_CHECK(n <= std::numeric_limits<size_t>::max() - n_bytes_total, describe("allgatherv", what),
             ": total size overflows size_t");
    n_bytes_total += n;
  }
  if (n_bytes_total == 0) return;
  QF_CHECK(recv != nullptr, describe("allgatherv", what), ": null recv buffer");
  QF_CHECK(send != nullptr || n_bytes_of_rank[rank_] == 0, describe("allgatherv", what),
           ": null send buffer for", n_bytes_of_rank[rank_], "bytes");
  const auto start = Clock::now();
  do_allgatherv(send, recv, n_bytes_of_rank, what);
  account(OpKind::kAllgather, n_bytes_total, start);
}

void Communicator::do_allgatherv(const void* send, void* recv,
                                 const std::vector<size_t>& n_bytes_of_rank, const char* what) {
  // Rank r broadcasts its part straight into its slot; send is copied by the root's own
  // broadcast only when it is not already in place.
  size_t offset = 0;
  for (int root = 0; root < world_size_; ++root) {
    const size_t n_bytes = n_bytes_of_rank[root];
    char* slot = static_cast<char*>(recv) + offset;
    if (n_bytes > 0) {
      if (root == rank_ && send != slot) copy_local(slot, send, n_bytes, what);
      do_broadcast(slot, n_bytes, root, what);
    }
    offset += n_bytes;
  }
}

void Communicator::broadcast_many(const std::vector<BroadcastPart>& parts, const char* what) {
  std::vector<BroadcastPart> non_empty;
  non_empty.reserve(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    const BroadcastPart& p = parts[i];
    QF_CHECK(p.root >= 0 && p.root < world_size_, describe("broadcast_many", what), ": part", i,
             "has root", p.root, "outside [0,", world_size_, ")");
    if (p.n_bytes == 0) continue;
    QF_CHECK(p.buf != nullptr, describe("broadcast_many", what), ": part", i,
             "has a null buffer for", p.n_bytes, "bytes");
    non_empty.push_back(p);
  }
  if (non_empty.empty()) return;
  uint64_t n_bytes = 0;
  for (const BroadcastPart& p : non_empty) n_bytes += p.n_bytes;
  const auto start = Clock::now();
  do_broadcast_many(non_empty, what);
  account(OpKind::kBroadcast, n_bytes, start);
}

void Communicator::do_broadcast_many(const std::vector<BroadcastPart>& parts, const char* what) {
  for (const BroadcastPart& p : parts) do_broadcast(p.buf, p.n_bytes, p.root, what);
}

void Communicator::barrier(const char* what) {
  const auto start = Clock::now();
  do_barrier(what);
  account(OpKind::kBarrier, 0, start);
}

// ---- named collectives ---------------------------------------------------------------------

void Communicator::allreduce_amax(float* amax, size_t n, const char* what) {
  if (!device_buffers()) {
    // NaN would make MAX order-dependent and a negative amax is a caller bug; 0 is "not seen".
    for (size_t i = 0; i < n; ++i) {
      QF_CHECK(std::isfinite(amax[i]) && amax[i] >= 0.0f, describe("allreduce_amax", what),
               ": element", i, "is", amax[i], "(amax must be finite and >= 0; 0 = not seen)");
    }
  }
  allreduce(amax, n, ElemType::kF32, ReduceOp::kMax, what);
}

void Communicator::allreduce_counts(int64_t* counts, size_t n, const char* what) {
  allreduce(counts, n, ElemType::kI64, ReduceOp::kSum, what);
}

void Communicator::allreduce_counts(uint64_t* counts, size_t n, const char* what) {
  allreduce(counts, n, ElemType::kU64, ReduceOp::kSum, what);
}

// ---- factory -------------------------------------------------------------------------------

std::unique_ptr<Communicator> make_communicator(Backend backend, const MpiEnv& mpi,
                                                const CommunicatorOptions& options) {
  if (backend == Backend::kMpi) return std::make_unique<MpiCommunicator>(mpi, options);
#ifdef QF_HAVE_CUDA
  return std::make_unique<NcclCommunicator>(mpi, options);
#else
  QF_FAIL("communication backend 'nccl' needs a CUDA build (QF_CUDA=ON); use 'mpi'");
#endif
}

}  // namespace qf::dist
