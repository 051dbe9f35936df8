// quantize --comm auto|mpi|nccl (dist::comm_choices, dist::resolve_comm): auto picks nccl only
// for the cuda backend with one GPU per rank; nccl with the cpu backend, without CUDA or with
// ranks sharing a GPU is refused with a message naming why; unknown names list the valid ones.
#include <functional>
#include <string>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "dist/compute_backend.hpp"
#include "error_test_util.hpp"

using namespace qf;
using qf::dist::CommChoice;
using qf::dist::ComputeBackend;
using qf::dist::resolve_comm;

namespace {

using qf::test::contains;
using qf::test::error_of;

}  // namespace

TEST_CASE("--comm mpi is always mpi; auto is nccl only for cuda with a GPU per rank", "[comm]") {
  const bool have_nccl = dist::backend_available(dist::Backend::kNccl);
  for (const bool own_gpu : {true, false}) {
    CHECK(dist::resolve_comm(CommChoice::kMpi, dist::ComputeBackend::kCpu, own_gpu) ==
          dist::Backend::kMpi);
    CHECK(dist::resolve_comm(CommChoice::kMpi, dist::ComputeBackend::kCuda, own_gpu) ==
          dist::Backend::kMpi);
    CHECK(dist::resolve_comm(CommChoice::kAuto, dist::ComputeBackend::kCpu, own_gpu) ==
          dist::Backend::kMpi);
  }
  CHECK(dist::resolve_comm(CommChoice::kAuto, dist::ComputeBackend::kCuda, false) ==
        dist::Backend::kMpi);
  CHECK(dist::resolve_comm(CommChoice::kAuto, dist::ComputeBackend::kCuda, true) ==
        (have_nccl ? dist::Backend::kNccl : dist::Backend::kMpi));
}

TEST_CASE("--comm nccl: refused with the cpu backend, without CUDA, with shared GPUs", "[comm]") {
  const bool have_nccl = dist::backend_available(dist::Backend::kNccl);
  for (const bool own_gpu : {true, false}) {
    const std::string m = error_of(
        [&] { dist::resolve_comm(CommChoice::kNccl, dist::ComputeBackend::kCpu, own_gpu); });
    CHECK(contains(m, "--comm nccl needs --backend cuda (the backend is cpu)"));
  }
  if (have_nccl) {
    CHECK(dist::resolve_comm(CommChoice::kNccl, dist::ComputeBackend::kCuda, true) ==
          dist::Backend::kNccl);
    CHECK(contains(
        error_of([] { dist::resolve_comm(CommChoice::kNccl, dist::ComputeBackend::kCuda, false); }),
        "needs one GPU per rank"));
  } else {
    CHECK(contains(
        error_of([] { dist::resolve_comm(CommChoice::kNccl, dist::ComputeBackend::kCuda, true); }),
        "built without CUDA"));
  }
}

TEST_CASE("--comm names: one table parses, names and lists them", "[comm]") {
  CHECK(dist::comm_choices().parse("auto") == CommChoice::kAuto);
  CHECK(dist::comm_choices().parse("mpi") == CommChoice::kMpi);
  CHECK(dist::comm_choices().parse("nccl") == CommChoice::kNccl);
  CHECK(std::string(dist::comm_choices().name(CommChoice::kNccl)) == "nccl");
  CHECK(contains(error_of([] { dist::comm_choices().parse("gloo"); }),
                 "unknown --comm 'gloo'; expected auto | mpi | nccl"));
  CHECK(contains(error_of([] { dist::comm_choices().parse(""); }), "expected auto | mpi | nccl"));
  CHECK(contains(dist::comm_choices().help("intro:"), "intro:\n  auto: "));
}
