// NCCL Communicator on device buffers (GPU machines): one rank as an MPI singleton (plain run)
// or N ranks under mpirun with one GPU each. Collectives against closed-form expected values,
// ordering through the compute stream without a host synchronization, errors name the rank and
// the operation. Expected values are written for any world size.
#include <cuda_runtime.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "dist/communicator.hpp"
#include "dist/mpi_env.hpp"
#include "dist/nccl_communicator.hpp"

using namespace qf::dist;
using qf::test::Mismatches;

namespace {

// MPI for the whole test binary (singleton init when not under mpirun); finalized at exit,
// after every communicator of the test cases is gone.
const MpiEnv& env() {
  static const MpiEnv instance(nullptr, nullptr);
  return instance;
}

// Test-local owner of a device allocation (core has no DeviceBuffer yet).
class DeviceBytes {
 public:
  explicit DeviceBytes(size_t n_bytes) : n_bytes_(n_bytes) {
    QF_CUDA_CHECK(cudaMalloc(&ptr_, n_bytes), "test cudaMalloc", n_bytes);
  }
  ~DeviceBytes() { cudaFree(ptr_); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(ptr_);
  }
  void upload(const void* src) {
    QF_CUDA_CHECK(cudaMemcpy(ptr_, src, n_bytes_, cudaMemcpyHostToDevice), "up");
  }
  template <typename T>
  std::vector<T> download() const {
    std::vector<T> out(n_bytes_ / sizeof(T));
    QF_CUDA_CHECK(cudaMemcpy(out.data(), ptr_, n_bytes_, cudaMemcpyDeviceToHost), "down");
    return out;
  }

 private:
  void* ptr_ = nullptr;
  size_t n_bytes_ = 0;
};

std::unique_ptr<Communicator> make_nccl(cudaStream_t compute = nullptr) {
  CommunicatorOptions options;
  options.compute_stream = compute;
  return make_communicator(Backend::kNccl, env(), options);
}

std::vector<uint8_t> pattern(int rank, size_t n_bytes) {
  std::vector<uint8_t> bytes(n_bytes);
  for (size_t i = 0; i < n_bytes; ++i) bytes[i] = static_cast<uint8_t>(rank * 31 + i * 7 + 1);
  return bytes;
}

}  // namespace

TEST_CASE("NCCL communicator: identity and device buffers", "[gpu][nccl]") {
  auto comm = make_nccl();
  CHECK(comm->backend() == Backend::kNccl);
  CHECK(comm->device_buffers());
  CHECK(comm->rank() == env().rank());
  CHECK(comm->world_size() == env().world_size());
  auto* nccl = dynamic_cast<NcclCommunicator*>(comm.get());
  REQUIRE(nccl != nullptr);
  int device = -1;
  cudaGetDevice(&device);
  CHECK(device == nccl->device());
}

TEST_CASE("NCCL allreduce sum/max in f32, f64, i64, u8 and named wrappers", "[gpu][nccl]") {
  auto comm = make_nccl();
  const int r = comm->rank(), n_ranks = comm->world_size();
  const size_t n = 1000;
  const ReduceOp op = GENERATE(ReduceOp::kSum, ReduceOp::kMax);
  // element i on rank r: (r+1) * (i%7+1); sum = k R(R+1)/2, max = k R.
  auto expected = [&](size_t i) {
    const int k = static_cast<int>(i % 7 + 1);
    return op == ReduceOp::kSum ? k * n_ranks * (n_ranks + 1) / 2 : k * n_ranks;
  };
  std::vector<float> f32(n);
  std::vector<double> f64(n);
  std::vector<int64_t> i64(n);
  std::vector<uint8_t> u8(n);
  for (size_t i = 0; i < n; ++i) {
    const int v = (r + 1) * static_cast<int>(i % 7 + 1);
    f32[i] = static_cast<float>(v);
    f64[i] = v;
    i64[i] = v;
    u8[i] = static_cast<uint8_t>(v);
  }
  DeviceBytes d_f32(n * 4), d_f64(n * 8), d_i64(n * 8), d_u8(n);
  d_f32.upload(f32.data());
  d_f64.upload(f64.data());
  d_i64.upload(i64.data());
  d_u8.upload(u8.data());
  comm->allreduce(d_f32.get(), n, ElemType::kF32, op, "gpu f32");
  comm->allreduce(d_f64.get(), n, ElemType::kF64, op, "gpu f64");
  comm->allreduce(d_i64.get(), n, ElemType::kI64, op, "gpu i64");
  comm->allreduce(d_u8.get(), n, ElemType::kU8, op, "gpu u8");
  comm->synchronize("gpu allreduce");
  const auto got_f32 = d_f32.download<float>();
  const auto got_f64 = d_f64.download<double>();
  const auto got_i64 = d_i64.download<int64_t>();
  const auto got_u8 = d_u8.download<uint8_t>();
  Mismatches wrong_f32("f32"), wrong_f64("f64"), wrong_i64("i64"), wrong_u8("u8");
  for (size_t i = 0; i < n; ++i) {
    const int e = expected(i);
    wrong_f32.check(got_f32[i] == static_cast<float>(e), i, got_f32[i], static_cast<float>(e));
    wrong_f64.check(got_f64[i] == static_cast<double>(e), i, got_f64[i], static_cast<double>(e));
    wrong_i64.check(got_i64[i] == e, i, got_i64[i], int64_t{e});
    wrong_u8.check(got_u8[i] == static_cast<uint8_t>(e), i, got_u8[i], static_cast<uint8_t>(e));
  }
  CHECK(wrong_f32.count() + wrong_f64.count() + wrong_i64.count() + wrong_u8.count() == 0);
}

TEST_CASE("NCCL allreduce_amax keeps 0 as not seen; counts sum", "[gpu][nccl]") {
  auto comm = make_nccl();
  const int r = comm->rank(), n_ranks = comm->world_size();
  std::vector<float> amax(40, 0.0f);
  for (size_t i = 0; i < 32; ++i) {
    if (static_cast<int>(i % n_ranks) == r) amax[i] = static_cast<float>(i) + 0.5f;
  }
  DeviceBytes d_amax(amax.size() * 4);
  d_amax.upload(amax.data());
  comm->allreduce_amax(d_amax.get<float>(), amax.size(), "gpu amax");
  std::vector<int64_t> counts = {r + 1, int64_t{1} << 40};
  DeviceBytes d_counts(counts.size() * 8);
  d_counts.upload(counts.data());
  comm->allreduce_counts(d_counts.get<int64_t>(), counts.size(), "gpu counts");
  comm->synchronize("gpu amax");
  const auto got = d_amax.download<float>();
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == (i < 32 ? static_cast<float>(i) + 0.5f : 0.0f));
  }
  const auto got_counts = d_counts.download<int64_t>();
  CHECK(got_counts[0] == int64_t{n_ranks} * (n_ranks + 1) / 2);
  CHECK(got_counts[1] == n_ranks * (int64_t{1} << 40));
}

TEST_CASE("NCCL broadcast from every root, allgather and allgatherv", "[gpu][nccl]") {
  auto comm = make_nccl();
  const int r = comm->rank(), n_ranks = comm->world_size();
  const size_t n_bytes = 4099;
  for (int root = 0; root < n_ranks; ++root) {
    DeviceBytes buf(n_bytes);
    auto host = r == root ? pattern(root, n_bytes) : std::vector<uint8_t>(n_bytes, 0xEE);
    buf.upload(host.data());
    comm->broadcast(buf.get(), n_bytes, root, "gpu broadcast");
    comm->synchronize("gpu broadcast");
    CHECK(buf.download<uint8_t>() == pattern(root, n_bytes));
  }
  std::vector<uint8_t> expected;
  for (int q = 0; q < n_ranks; ++q) {
    const auto p = pattern(q, n_bytes);
    expected.insert(expected.end(), p.begin(), p.end());
  }
  DeviceBytes send(n_bytes), recv(n_bytes * n_ranks);
  send.upload(pattern(r, n_bytes).data());
  comm->allgather(send.get(), recv.get(), n_bytes, "gpu allgather");
  comm->synchronize("gpu allgather");
  CHECK(recv.download<uint8_t>() == expected);
  // In place: this rank's slot already holds its bytes.
  DeviceBytes in_place(n_bytes * n_ranks);
  std::vector<uint8_t> host(n_bytes * n_ranks, 0xEE);
  std::memcpy(host.data() + r * n_bytes, pattern(r, n_bytes).data(), n_bytes);
  in_place.upload(host.data());
  comm->allgather(in_place.get<uint8_t>() + r * n_bytes, in_place.get(), n_bytes, "in place");
  comm->synchronize("gpu allgather in place");
  CHECK(in_place.download<uint8_t>() == expected);

  std::vector<size_t> sizes(n_ranks);
  std::vector<uint8_t> expected_v;
  for (int q = 0; q < n_ranks; ++q) {
    sizes[q] = q == 1 ? 0 : 5 * q + 3;
    const auto p = pattern(q, sizes[q]);
    expected_v.insert(expected_v.end(), p.begin(), p.end());
  }
  DeviceBytes send_v(std::max<size_t>(sizes[r], 1)), recv_v(expected_v.size());
  if (sizes[r] > 0) {
    const auto p = pattern(r, sizes[r]);
    QF_CUDA_CHECK(cudaMemcpy(send_v.get(), p.data(), p.size(), cudaMemcpyHostToDevice), "up");
  }
  comm->allgatherv(send_v.get(), recv_v.get(), sizes, "gpu allgatherv");
  comm->synchronize("gpu allgatherv");
  CHECK(recv_v.download<uint8_t>() == expected_v);
  comm->barrier("gpu barrier");
}

// The CUDA calibration's weight exchange: one arena, every owner run broadcast from its owner,
// more parts than one NCCL group takes (kMaxGroupOps); then the amax all-reduce on the float
// bit patterns as int32 (non-negative floats, NaN made positive, order like their bits).
TEST_CASE("NCCL broadcast_many fills one arena from many roots; amax bits reduce as int32",
          "[gpu][nccl]") {
  auto comm = make_nccl();
  const int r = comm->rank(), n_ranks = comm->world_size();
  const size_t n_parts = NcclCommunicator::kMaxGroupOps * 2 + 7, part_bytes = 37;
  std::vector<uint8_t> host(n_parts * part_bytes, 0xEE), expected(n_parts * part_bytes);
  for (size_t i = 0; i < n_parts; ++i) {
    const int root = static_cast<int>(i % n_ranks);
    const auto p = pattern(root + static_cast<int>(i), part_bytes);
    std::memcpy(expected.data() + i * part_bytes, p.data(), part_bytes);
    if (root == r) std::memcpy(host.data() + i * part_bytes, p.data(), part_bytes);
  }
  DeviceBytes arena(host.size());
  arena.upload(host.data());
  std::vector<Communicator::BroadcastPart> parts;
  for (size_t i = 0; i < n_parts; ++i) {
    parts.push_back(
        {arena.get<uint8_t>() + i * part_bytes, part_bytes, static_cast<int>(i % n_ranks)});
  }
  comm->broadcast_many(parts, "gpu broadcast_many");
  comm->synchronize("gpu broadcast_many");
  CHECK(arena.download<uint8_t>() == expected);

  // Slot 0: rank r sees r + 0.5; slot 1: only the last rank sees +Inf; slot 2: unseen (0).
  float mine[3] = {r + 0.5f, r == n_ranks - 1 ? INFINITY : 1.0f, 0.0f};
  DeviceBytes bits(sizeof(mine));
  bits.upload(mine);
  comm->allreduce(bits.get(), 3, ElemType::kI32, ReduceOp::kMax, "gpu amax bits");
  comm->synchronize("gpu amax bits");
  const auto got = bits.download<float>();
  CHECK(got[0] == n_ranks - 0.5f);
  CHECK(std::isinf(got[1]));
  CHECK(got[2] == 0.0f);
}

// Copies in, reduces and copies out on a user compute stream, then synchronizes only that
// stream: correct results prove the events order the comm stream between the copies.
TEST_CASE("NCCL collectives are ordered with the compute stream", "[gpu][nccl]") {
  cudaStream_t compute = nullptr;
  QF_CUDA_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), "compute stream");
  {
    auto comm = make_nccl(compute);
    const int n_ranks = comm->world_size();
    const size_t n = size_t{1} << 22;  // 16 MiB of f32: long enough to expose a missing wait
    std::vector<float> host(n, static_cast<float>(comm->rank() + 1));
    float* pinned = nullptr;
    QF_CUDA_CHECK(cudaMallocHost(&pinned, n * sizeof(float)), "pinned");
    std::memcpy(pinned, host.data(), n * sizeof(float));
    DeviceBytes buf(n * sizeof(float));
    QF_CUDA_CHECK(cudaMemsetAsync(buf.get(), 0, n * sizeof(float), compute), "memset");
    QF_CUDA_CHECK(
        cudaMemcpyAsync(buf.get(), pinned, n * sizeof(float), cudaMemcpyHostToDevice, compute),
        "h2d");
    comm->allreduce(buf.get(), n, ElemType::kF32, ReduceOp::kSum, "ordered sum");
    QF_CUDA_CHECK(
        cudaMemcpyAsync(pinned, buf.get(), n * sizeof(float), cudaMemcpyDeviceToHost, compute),
        "d2h");
    QF_CUDA_CHECK(cudaStreamSynchronize(compute), "compute sync");
    const float expected = static_cast<float>(n_ranks * (n_ranks + 1) / 2);
    Mismatches wrong("ordered sum");
    for (size_t i = 0; i < n; ++i) wrong.check(pinned[i] == expected, i, pinned[i], expected);
    CHECK(wrong.count() == 0);
    cudaFreeHost(pinned);
  }
  cudaStreamDestroy(compute);
}

// Communication accounting on NCCL: counts and payloads as on MPI, plus the comm-stream time
// of each collective from timing events; stats() waits for the collectives still in flight.
TEST_CASE("NCCL stats count collectives and time them on the stream", "[gpu][nccl]") {
  auto comm = make_nccl();
  const int n_ranks = comm->world_size();
  const size_t n = size_t{1} << 22;  // 16 MiB of f32
  DeviceBytes buf(n * sizeof(float));
  QF_CUDA_CHECK(cudaMemset(buf.get(), 0, n * sizeof(float)), "memset");
  for (int i = 0; i < 3; ++i) {
    comm->allreduce(buf.get(), n, ElemType::kF32, ReduceOp::kSum, "stats sum");
  }
  comm->broadcast(buf.get(), 1000, n_ranks - 1, "stats broadcast");
  comm->broadcast_many({{buf.get<uint8_t>(), 10, 0}, {buf.get<uint8_t>() + 100, 20, n_ranks - 1}},
                       "stats broadcast_many");
  DeviceBytes gathered(64 * n_ranks);
  comm->allgather(buf.get(), gathered.get(), 64, "stats allgather");
  const CommStats in_flight = comm->stats();  // waits for the timing events, not a sync
  CHECK(in_flight.device_timed);
  CHECK(in_flight.op(OpKind::kAllreduce).count == 3);
  CHECK(in_flight.op(OpKind::kAllreduce).bytes == 3 * n * sizeof(float));
  CHECK(in_flight.op(OpKind::kBroadcast).count == 2);
  CHECK(in_flight.op(OpKind::kBroadcast).bytes == 1000 + 30);
  CHECK(in_flight.op(OpKind::kAllgather).count == 1);
  CHECK(in_flight.op(OpKind::kAllgather).bytes == 64 * size_t(n_ranks));
  for (const OpStats& o : in_flight.ops) {
    CHECK(o.device_seconds >= 0.0);
    CHECK(o.host_seconds >= 0.0);
  }
  if (n_ranks > 1) CHECK(in_flight.op(OpKind::kAllreduce).device_seconds > 0.0);
  comm->synchronize("stats sync");
  comm->barrier("stats barrier");
  const CommStats s = comm->stats();
  CHECK(s.op(OpKind::kBarrier).count == 1);
  CHECK(s.op(OpKind::kAllreduce).device_seconds == in_flight.op(OpKind::kAllreduce).device_seconds);
  CHECK(s.synchronize_seconds >= 0.0);
  CHECK(s.describe(1.0).find("on the GPU") != std::string::npos);
}

TEST_CASE("NCCL errors name the rank, the backend and the operation", "[gpu][nccl]") {
  auto comm = make_nccl();
  DeviceBytes buf(16);
  try {
    comm->broadcast(buf.get(), 16, comm->world_size(), "layer 2 weights");
    FAIL("bad root accepted");
  } catch (const qf::Error& e) {
    const std::string expected = "rank " + std::to_string(comm->rank()) + "/" +
                                 std::to_string(comm->world_size()) +
                                 " nccl broadcast 'layer 2 weights'";
    CHECK(e.message().find(expected) != std::string::npos);
  }
  CHECK_THROWS_AS(make_communicator(Backend::kNccl, env(), CommunicatorOptions{1 << 30, 4096}),
                  qf::Error);  // no device 4096
}
