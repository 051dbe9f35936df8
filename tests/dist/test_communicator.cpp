// MPI Communicator under mpirun -np 1..4: every collective against closed-form expected values
// per rank and element (nccl-tests verifiable style), in whole and chunked messages; amax with
// 0 = "not seen"; broadcast from every root; errors name the rank and the operation.
// Only CHECK before a collective: a REQUIRE failing on one rank would leave the others waiting.
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "core/strings.hpp"
#include "dist/communicator.hpp"
#include "dist/mpi_env.hpp"

using namespace qf::dist;

namespace {

// MPI is initialised by catch_main_mpi.cpp; this MpiEnv only reads rank and host facts.
const MpiEnv& env() {
  static const MpiEnv instance(nullptr, nullptr);
  return instance;
}

std::unique_ptr<Communicator> make_mpi(size_t max_chunk_bytes = size_t{1} << 30) {
  CommunicatorOptions options;
  options.max_chunk_bytes = max_chunk_bytes;
  return make_communicator(Backend::kMpi, env(), options);
}

// Value of element i on rank r, small enough that sums over 4 ranks are exact in every type.
template <typename T>
T value_at(int r, size_t i) {
  return static_cast<T>((r + 1) * static_cast<int>(i % 7 + 1));
}

template <typename T>
size_t count_wrong_reduce(ElemType type, ReduceOp op, size_t n_elems, size_t chunk) {
  auto comm = make_mpi(chunk);
  const int n_ranks = comm->world_size();
  std::vector<T> buf(n_elems);
  for (size_t i = 0; i < n_elems; ++i) buf[i] = value_at<T>(comm->rank(), i);
  comm->allreduce(buf.data(), n_elems, type, op, "test allreduce");
  size_t n_wrong = 0;
  for (size_t i = 0; i < n_elems; ++i) {
    // sum_r (r+1) k = k R(R+1)/2 ; max_r (r+1) k = k R
    const T k = static_cast<T>(i % 7 + 1);
    const T expected = op == ReduceOp::kSum ? static_cast<T>(k * (n_ranks * (n_ranks + 1) / 2))
                                            : static_cast<T>(k * n_ranks);
    if (buf[i] != expected) ++n_wrong;
  }
  return n_wrong;
}

std::vector<uint8_t> pattern(int rank, size_t n_bytes) {
  std::vector<uint8_t> bytes(n_bytes);
  for (size_t i = 0; i < n_bytes; ++i) bytes[i] = static_cast<uint8_t>(rank * 31 + i * 7 + 1);
  return bytes;
}

}  // namespace

TEST_CASE("backend names and availability", "[mpi]") {
  CHECK(parse_backend("mpi") == Backend::kMpi);
  CHECK(parse_backend("nccl") == Backend::kNccl);
  CHECK_THROWS_AS(parse_backend("gloo"), qf::Error);
  CHECK(backend_available(Backend::kMpi));
  CHECK(elem_n_bytes(ElemType::kU8) == 1);
  CHECK(elem_n_bytes(ElemType::kF64) == 8);
  auto comm = make_mpi();
  CHECK(comm->rank() == env().rank());
  CHECK(comm->world_size() == env().world_size());
  CHECK_FALSE(comm->device_buffers());
  CHECK(comm->backend() == Backend::kMpi);
}

TEST_CASE("allreduce sum and max give closed-form values in every type", "[mpi]") {
  // 1 GiB pieces (one call) and 7- or 64-byte pieces (many calls, odd boundaries).
  const size_t chunk = GENERATE(size_t{1} << 30, size_t{7}, size_t{64});
  const size_t n_elems = GENERATE(size_t{1}, size_t{13}, size_t{1000});
  const ReduceOp op = GENERATE(ReduceOp::kSum, ReduceOp::kMax);
  INFO("chunk " << chunk << " n " << n_elems << " op " << reduce_op_name(op));
  CHECK(count_wrong_reduce<float>(ElemType::kF32, op, n_elems, chunk) == 0);
  CHECK(count_wrong_reduce<double>(ElemType::kF64, op, n_elems, chunk) == 0);
  CHECK(count_wrong_reduce<int32_t>(ElemType::kI32, op, n_elems, chunk) == 0);
  CHECK(count_wrong_reduce<int64_t>(ElemType::kI64, op, n_elems, chunk) == 0);
  CHECK(count_wrong_reduce<uint64_t>(ElemType::kU64, op, n_elems, chunk) == 0);
  CHECK(count_wrong_reduce<uint8_t>(ElemType::kU8, op, n_elems, chunk) == 0);
}

TEST_CASE("allreduce_amax: 0 means not seen, the max of the ranks that saw it wins", "[mpi]") {
  auto comm = make_mpi();
  const int r = comm->rank(), n_ranks = comm->world_size();
  // Element i: seen only by rank i % R with value i + 0.5, by rank (i+1) % R with half that;
  // the last 5 elements are seen by nobody and must stay exactly 0.
  const size_t n = 64;
  std::vector<float> amax(n + 5, 0.0f);
  for (size_t i = 0; i < n; ++i) {
    if (static_cast<int>(i % n_ranks) == r) amax[i] = static_cast<float>(i) + 0.5f;
    if (n_ranks > 1 && static_cast<int>((i + 1) % n_ranks) == r) {
      amax[i] = (static_cast<float>(i) + 0.5f) / 2;
    }
  }
  comm->allreduce_amax(amax.data(), amax.size(), "test amax");
  size_t n_wrong = 0;
  for (size_t i = 0; i < n; ++i) n_wrong += amax[i] == static_cast<float>(i) + 0.5f ? 0 : 1;
  for (size_t i = n; i < amax.size(); ++i) n_wrong += amax[i] == 0.0f ? 0 : 1;
  CHECK(n_wrong == 0);
}

TEST_CASE("allreduce_counts sums 64-bit counters exactly", "[mpi]") {
  auto comm = make_mpi();
  const int r = comm->rank(), n_ranks = comm->world_size();
  std::vector<int64_t> signed_counts = {r + 1, -(r + 1), int64_t{1} << 40};
  std::vector<uint64_t> unsigned_counts = {uint64_t(r) << 33, 1};
  comm->allreduce_counts(signed_counts.data(), signed_counts.size(), "test counts i64");
  comm->allreduce_counts(unsigned_counts.data(), unsigned_counts.size(), "test counts u64");
  const int64_t tri = int64_t{n_ranks} * (n_ranks + 1) / 2;
  CHECK(signed_counts == std::vector<int64_t>{tri, -tri, n_ranks * (int64_t{1} << 40)});
  CHECK(unsigned_counts ==
        std::vector<uint64_t>{(uint64_t(n_ranks) * (n_ranks - 1) / 2) << 33, uint64_t(n_ranks)});
}

TEST_CASE("broadcast from every root, whole and chunked", "[mpi]") {
  const size_t chunk = GENERATE(size_t{1} << 30, size_t{5});
  const size_t n_bytes = GENERATE(size_t{1}, size_t{13}, size_t{4097});
  auto comm = make_mpi(chunk);
  for (int root = 0; root < comm->world_size(); ++root) {
    INFO("root " << root << " bytes " << n_bytes << " chunk " << chunk);
    std::vector<uint8_t> buf =
        comm->rank() == root ? pattern(root, n_bytes) : std::vector<uint8_t>(n_bytes, 0xEE);
    comm->broadcast(buf.data(), n_bytes, root, "test broadcast");
    CHECK(buf == pattern(root, n_bytes));
  }
}

TEST_CASE("allgather places rank r's bytes in slot r, out of place and in place", "[mpi]") {
  // 3-byte pieces force the derived-datatype path (slot > piece).
  const size_t chunk = GENERATE(size_t{1} << 30, size_t{3});
  const size_t n_bytes = GENERATE(size_t{1}, size_t{10}, size_t{1000});
  auto comm = make_mpi(chunk);
  const int r = comm->rank(), n_ranks = comm->world_size();
  std::vector<uint8_t> expected;
  for (int q = 0; q < n_ranks; ++q) {
    const auto p = pattern(q, n_bytes);
    expected.insert(expected.end(), p.begin(), p.end());
  }
  INFO("bytes " << n_bytes << " chunk " << chunk);
  const std::vector<uint8_t> send = pattern(r, n_bytes);
  std::vector<uint8_t> recv(n_bytes * n_ranks, 0xEE);
  comm->allgather(send.data(), recv.data(), n_bytes, "test allgather");
  CHECK(recv == expected);

  std::vector<uint8_t> in_place(n_bytes * n_ranks, 0xEE);
  std::memcpy(in_place.data() + r * n_bytes, send.data(), n_bytes);
  comm->allgather(in_place.data() + r * n_bytes, in_place.data(), n_bytes, "test in place");
  CHECK(in_place == expected);
}

TEST_CASE("allgatherv concatenates per-rank sizes, including empty ranks", "[mpi]") {
  auto comm = make_mpi(GENERATE(size_t{1} << 30, size_t{4}));
  const int r = comm->rank(), n_ranks = comm->world_size();
  std::vector<size_t> sizes(n_ranks);
  for (int q = 0; q < n_ranks; ++q) sizes[q] = q == 1 ? 0 : 3 * q + 2;  // rank 1 sends nothing
  std::vector<uint8_t> expected;
  for (int q = 0; q < n_ranks; ++q) {
    const auto p = pattern(q, sizes[q]);
    expected.insert(expected.end(), p.begin(), p.end());
  }
  const auto send = pattern(r, sizes[r]);
  std::vector<uint8_t> recv(expected.size(), 0xEE);
  comm->allgatherv(send.data(), recv.data(), sizes, "test allgatherv");
  CHECK(recv == expected);
}

TEST_CASE("broadcast_many: each part from its own root, empty parts skipped", "[mpi]") {
  auto comm = make_mpi(GENERATE(size_t{1} << 30, size_t{3}));
  const int r = comm->rank(), n_ranks = comm->world_size();
  // Part i: 5 * i + 1 bytes (part 2 empty) from root i % R, as a layer's owner runs are.
  const int n_parts = 7;
  std::vector<std::vector<uint8_t>> bufs(n_parts);
  std::vector<Communicator::BroadcastPart> parts;
  for (int i = 0; i < n_parts; ++i) {
    const int root = i % n_ranks;
    const size_t n_bytes = i == 2 ? 0 : 5 * i + 1;
    bufs[i] = r == root ? pattern(root + 10 * i, n_bytes) : std::vector<uint8_t>(n_bytes, 0xEE);
    parts.push_back({bufs[i].data(), n_bytes, root});
  }
  comm->broadcast_many(parts, "test broadcast_many");
  for (int i = 0; i < n_parts; ++i) {
    INFO("part " << i);
    CHECK(bufs[i] == pattern(i % n_ranks + 10 * i, i == 2 ? 0 : 5 * i + 1));
  }
  comm->broadcast_many({}, "no parts");
  // A bad root is caught on every rank before any communication.
  uint8_t byte = 0;
  CHECK_THROWS_AS(comm->broadcast_many({{&byte, 1, n_ranks}}, "bad root"), qf::Error);
  CHECK_THROWS_AS(comm->broadcast_many({{nullptr, 1, 0}}, "null part"), qf::Error);
}

TEST_CASE("barrier holds every rank until the last one arrives", "[mpi]") {
  auto comm = make_mpi();
  const double start = MPI_Wtime();
  comm->barrier("test sync start");
  if (comm->rank() == comm->world_size() - 1) {
    while (MPI_Wtime() - start < 0.2) {
    }
  }
  comm->barrier("test barrier");
  CHECK(MPI_Wtime() - start >= 0.15);
  comm->synchronize("no-op for MPI");
}

TEST_CASE("zero-sized collectives are no-ops on every rank", "[mpi]") {
  auto comm = make_mpi();
  comm->allreduce(nullptr, 0, ElemType::kF32, ReduceOp::kSum, "empty allreduce");
  comm->broadcast(nullptr, 0, 0, "empty broadcast");
  comm->allgather(nullptr, nullptr, 0, "empty allgather");
  comm->allgatherv(nullptr, nullptr, std::vector<size_t>(comm->world_size(), 0), "empty gatherv");
  comm->allreduce_amax(nullptr, 0, "empty amax");
  SUCCEED();
}

// Bad arguments are caught identically on every rank before any communication, so every rank
// throws and none hangs; the message names the rank and the operation.
TEST_CASE("errors carry the rank, the backend and the operation", "[mpi]") {
  auto comm = make_mpi();
  const std::string who =
      "rank " + std::to_string(comm->rank()) + "/" + std::to_string(comm->world_size()) + " mpi";
  auto message_of = [](const std::function<void()>& f) -> std::string {
    try {
      f();
    } catch (const qf::Error& e) {
      return e.message();
    }
    return "(no error)";
  };
  uint8_t byte = 0;
  std::string m = message_of([&] { comm->broadcast(&byte, 1, comm->world_size(), "layer 7 w"); });
  CHECK(m.find(who + " broadcast 'layer 7 w'") != std::string::npos);
  CHECK(m.find("root") != std::string::npos);

  m = message_of([&] { comm->allgatherv(&byte, &byte, {1}, "sizes"); });
  if (comm->world_size() != 1) CHECK(m.find(who + " allgatherv 'sizes'") != std::string::npos);

  std::vector<uint8_t> buf(4 * comm->world_size() + 4);
  m = message_of([&] { comm->allgather(buf.data() + 1, buf.data(), 4, "overlap"); });
  CHECK(m.find(who + " allgather 'overlap'") != std::string::npos);

  float amax[2] = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  m = message_of([&] { comm->allreduce_amax(amax, 2, "layer 3 input amax"); });
  CHECK(m.find(who + " allreduce_amax 'layer 3 input amax'") != std::string::npos);
  CHECK(m.find("element 1") != std::string::npos);
  amax[1] = -1.0f;
  CHECK_THROWS_AS(comm->allreduce_amax(amax, 2, "negative"), qf::Error);

  m = message_of([&] { comm->allreduce(nullptr, 3, ElemType::kF32, ReduceOp::kMax, "null"); });
  CHECK(m.find(who + " allreduce 'null'") != std::string::npos);
  // The communicator still works after rejected calls.
  int64_t one = 1;
  comm->allreduce_counts(&one, 1, "after errors");
  CHECK(one == comm->world_size());
}

// Communication accounting: each public call counts once (whatever its pieces), with its
// payload; empty and rejected calls count nothing; the time a rank waits inside a collective
// is recorded as its host time; MPI has no device time.
TEST_CASE("stats count each collective once with its payload and host time", "[mpi]") {
  auto comm = make_mpi(GENERATE(size_t{1} << 30, size_t{3}));  // whole and chunked messages
  const int r = comm->rank(), n_ranks = comm->world_size();
  const CommStats zero = comm->stats();
  for (const OpStats& o : zero.ops) {
    CHECK(o.count == 0);
    CHECK(o.bytes == 0);
    CHECK(o.host_seconds == 0.0);
  }
  CHECK_FALSE(zero.device_timed);

  std::vector<float> amax(10, float(r + 1));
  comm->allreduce_amax(amax.data(), amax.size(), "stats amax");  // 40 bytes
  int64_t counts[3] = {1, 2, 3};
  comm->allreduce_counts(counts, 3, "stats counts");  // 24 bytes
  std::vector<uint8_t> buf(100, static_cast<uint8_t>(r));
  comm->broadcast(buf.data(), buf.size(), n_ranks - 1, "stats broadcast");  // 100 bytes
  std::vector<uint8_t> a(10), b(20);
  comm->broadcast_many({{a.data(), a.size(), 0}, {b.data(), b.size(), n_ranks - 1}},
                       "stats broadcast_many");  // one call, 30 bytes
  std::vector<uint8_t> gathered(8 * n_ranks);
  comm->allgather(pattern(r, 8).data(), gathered.data(), 8, "stats allgather");  // 8 R bytes
  std::vector<size_t> sizes(n_ranks);
  size_t total = 0;
  for (int k = 0; k < n_ranks; ++k) total += sizes[k] = 3 + k;
  std::vector<uint8_t> gathered_v(total);
  comm->allgatherv(pattern(r, sizes[r]).data(), gathered_v.data(), sizes, "stats allgatherv");
  // Empty and rejected calls: not counted.
  comm->allreduce(nullptr, 0, ElemType::kF32, ReduceOp::kSum, "empty");
  comm->broadcast(nullptr, 0, 0, "empty");
  comm->broadcast_many({}, "empty");
  CHECK_THROWS_AS(comm->broadcast(buf.data(), 1, n_ranks, "bad root"), qf::Error);
  // The last rank arrives 0.2 s late: every other rank's barrier time holds the wait.
  comm->barrier("stats sync");
  if (r == n_ranks - 1) {
    const double start = MPI_Wtime();
    while (MPI_Wtime() - start < 0.2) {
    }
  }
  comm->barrier("stats late barrier");
  comm->synchronize("stats synchronize");

  const CommStats s = comm->stats();
  CHECK(s.op(OpKind::kAllreduce).count == 2);
  CHECK(s.op(OpKind::kAllreduce).bytes == 40 + 24);
  CHECK(s.op(OpKind::kBroadcast).count == 2);
  CHECK(s.op(OpKind::kBroadcast).bytes == 100 + 30);
  CHECK(s.op(OpKind::kAllgather).count == 2);
  CHECK(s.op(OpKind::kAllgather).bytes == 8 * n_ranks + total);
  CHECK(s.op(OpKind::kBarrier).count == 2);
  CHECK(s.op(OpKind::kBarrier).bytes == 0);
  if (r != n_ranks - 1) CHECK(s.op(OpKind::kBarrier).host_seconds >= 0.15);
  double host = 0;
  for (const OpStats& o : s.ops) {
    CHECK(o.host_seconds >= 0.0);
    CHECK(o.device_seconds == 0.0);
    host += o.host_seconds;
  }
  CHECK_FALSE(s.device_timed);
  CHECK(s.seconds() == host);  // MPI: the host time is all of it; synchronize is a no-op

  const std::string text = s.describe(2.0 * s.seconds() + 1e-9);
  INFO(text);
  CHECK(qf::starts_with(text, "allreduce 2 / 64 B / "));
  CHECK(text.find(", broadcast 2 / 130 B / ") != std::string::npos);
  CHECK(text.find(", barrier 2 / ") != std::string::npos);
  CHECK(text.find("share of wall time") != std::string::npos);
  CHECK(s.describe(0).find("share") == std::string::npos);
  CHECK(op_kind_name(OpKind::kAllgather) == std::string("allgather"));
}
