// MpiCommunicator: collectives on host buffers; messages above max_chunk_bytes are split into
// pieces because MPI counts are int (a 61-layer model has 2+ GB broadcasts).
#include "dist/mpi_communicator.hpp"

#include <algorithm>
#include <climits>
#include <cstring>

#include "core/check.hpp"
#include "core/log.hpp"
#include "dist/mpi_env.hpp"

namespace qf::dist {
namespace {

MPI_Datatype mpi_type(ElemType type) {
  switch (type) {
    case ElemType::kF32:
      return MPI_FLOAT;
    case ElemType::kF64:
      return MPI_DOUBLE;
    case ElemType::kI32:
      return MPI_INT32_T;
    case ElemType::kI64:
      return MPI_INT64_T;
    case ElemType::kU64:
      return MPI_UINT64_T;
    case ElemType::kU8:
      return MPI_UINT8_T;
  }
  QF_FAIL("unknown ElemType", static_cast<int>(type));
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::kSum ? MPI_SUM : MPI_MAX; }

// RAII for a committed derived datatype (used for large all-gathers).
class MpiDatatype {
 public:
  // n_bytes contiguous bytes whose extent is `extent` bytes: one rank's slot of a chunk.
  MpiDatatype(int n_bytes, MPI_Aint extent, const std::string& context) {
    MPI_Datatype contiguous = MPI_DATATYPE_NULL;
    QF_MPI_CHECK(MPI_Type_contiguous(n_bytes, MPI_BYTE, &contiguous), context);
    const int rc = MPI_Type_create_resized(contiguous, 0, extent, &type_);
    MPI_Type_free(&contiguous);
    QF_MPI_CHECK(rc, context);
    QF_MPI_CHECK(MPI_Type_commit(&type_), context);
  }
  ~MpiDatatype() {
    if (type_ != MPI_DATATYPE_NULL && MpiEnv::active()) MPI_Type_free(&type_);
  }
  MpiDatatype(const MpiDatatype&) = delete;
  MpiDatatype& operator=(const MpiDatatype&) = delete;
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

}  // namespace

MpiCommunicator::MpiCommunicator(const MpiEnv& mpi, const CommunicatorOptions& options)
    : Communicator(mpi.rank(), mpi.world_size()),
      max_chunk_bytes_(std::min<size_t>(options.max_chunk_bytes, INT_MAX)) {
  QF_CHECK(options.max_chunk_bytes > 0, "max_chunk_bytes must be positive");
  QF_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), describe("comm_dup", "communicator"));
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
}

MpiCommunicator::~MpiCommunicator() {
  if (comm_ == MPI_COMM_NULL || !MpiEnv::active()) return;
  const int rc = MPI_Comm_free(&comm_);
  if (rc != MPI_SUCCESS) log_error("rank ", rank(), ": MPI_Comm_free failed with code ", rc);
}

void MpiCommunicator::do_allreduce(void* buf, size_t n_elems, ElemType type, ReduceOp op,
                                   const char* what) {
  const size_t elem_bytes = elem_n_bytes(type);
  const size_t chunk_elems = std::max<size_t>(1, max_chunk_bytes_ / elem_bytes);
  auto* bytes = static_cast<char*>(buf);
  for (size_t first = 0; first < n_elems; first += chunk_elems) {
    const size_t count = std::min(chunk_elems, n_elems - first);
    QF_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, bytes + first * elem_bytes, static_cast<int>(count),
                               mpi_type(type), mpi_op(op), comm_),
                 describe("allreduce", what), "(", elem_type_name(type), reduce_op_name(op),
                 n_elems, "elements, piece at element", first, ")");
  }
}

void MpiCommunicator::do_broadcast(void* buf, size_t n_bytes, int root, const char* what) {
  auto* bytes = static_cast<char*>(buf);
  for (size_t first = 0; first < n_bytes; first += max_chunk_bytes_) {
    const size_t count = std::min(max_chunk_bytes_, n_bytes - first);
    QF_MPI_CHECK(MPI_Bcast(bytes + first, static_cast<int>(count), MPI_BYTE, root, comm_),
                 describe("broadcast", what), "(", n_bytes, "bytes from root", root,
                 ", piece at byte", first, ")");
  }
}

void MpiCommunicator::do_allgather(const void* send, void* recv, size_t n_bytes_per_rank,
                                   const char* what) {
  auto* recv_bytes = static_cast<char*>(recv);
  const bool in_place = send == recv_bytes + rank() * n_bytes_per_rank;
  if (n_bytes_per_rank <= max_chunk_bytes_) {
    const int count = static_cast<int>(n_bytes_per_rank);
    QF_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : send, count, MPI_BYTE, recv, count,
                               MPI_BYTE, comm_),
                 describe("allgather", what), "(", n_bytes_per_rank, "bytes per rank)");
    return;
  }
  // Piece [first, first+count) of every rank's slot: a datatype of `count` bytes whose extent
  // is the slot size places rank r's piece at recv + first + r * n_bytes_per_rank.
  const auto* send_bytes = static_cast<const char*>(send);
  for (size_t first = 0; first < n_bytes_per_rank; first += max_chunk_bytes_) {
    const int count = static_cast<int>(std::min(max_chunk_bytes_, n_bytes_per_rank - first));
    const std::string context = str_cat(describe("allgather", what), " (", n_bytes_per_rank,
                                        " bytes per rank, piece at byte ", first, ")");
    const MpiDatatype slot(count, static_cast<MPI_Aint>(n_bytes_per_rank), context);
    QF_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : send_bytes + first, count, MPI_BYTE,
                               recv_bytes + first, 1, slot.get(), comm_),
                 context);
  }
}

void MpiCommunicator::do_barrier(const char* what) {
  QF_MPI_CHECK(MPI_Barrier(comm_), describe("barrier", what));
}

void MpiCommunicator::copy_local(void* dst, const void* src, size_t n_bytes, const char*) {
  std::memmove(dst, src, n_bytes);
}

}  // namespace qf::dist
