// ComputeBackend selection; the CUDA query is compiled only in CUDA builds.
#include "dist/compute_backend.hpp"

#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#include "core/check.hpp"

namespace qf::dist {

int cuda_device_count() {
#ifdef QF_HAVE_CUDA
  int n_devices = 0;
  if (cudaGetDeviceCount(&n_devices) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n_devices;
#else
  return 0;
#endif
}

void select_cuda_device(int local_rank) {
#ifdef QF_HAVE_CUDA
  const int n_devices = cuda_device_count();
  if (n_devices == 0) return;
  QF_CUDA_CHECK(cudaSetDevice(local_rank % n_devices), "selecting the GPU of local rank",
                local_rank);
#else
  (void)local_rank;
#endif
}

ComputeBackend resolve_backend(const std::string& name) {
  if (name == "cpu") return ComputeBackend::kCpu;
  if (name == "auto") return cuda_device_count() > 0 ? ComputeBackend::kCuda : ComputeBackend::kCpu;
  if (name == "cuda") {
#ifndef QF_HAVE_CUDA
    QF_FAIL("--backend cuda: this quantforge was built without CUDA (QF_CUDA=OFF)");
#endif
    QF_CHECK(cuda_device_count() > 0, "--backend cuda: no CUDA device is visible");
    return ComputeBackend::kCuda;
  }
  QF_FAIL("unknown backend '", name, "' (expected auto, cpu or cuda)");
}

Backend resolve_comm(const std::string& name, ComputeBackend backend, bool every_rank_own_gpu) {
  QF_CHECK(name == "auto" || name == "mpi" || name == "nccl", "unknown --comm '" + name +
           "' (expected auto, mpi or nccl)");
  if (name == "mpi") return Backend::kMpi;
  if (name == "auto") {
    return backend == ComputeBackend::kCuda && every_rank_own_gpu && dist::backend_available(Backend::kNccl)
               ? Backend::kNccl
               : Backend::kMpi;
  }
  QF_CHECK(backend == ComputeBackend::kCuda,
           std::string("--comm nccl needs --backend cuda (the backend is ") +
               backend_name(backend) + "); use --comm mpi or auto");
  QF_CHECK(dist::backend_available(Backend::kNccl),
           "--comm nccl: this quantforge was built without CUDA (QF_CUDA=OFF)");
  QF_CHECK(every_rank_own_gpu, "--comm nccl needs one GPU per rank, but ranks share a GPU on",
           "some host (NCCL refuses two ranks on one GPU); use --comm mpi or auto");
  return Backend::kNccl;
}

const char* backend_name(ComputeBackend backend) { return backend == ComputeBackend::kCuda ? "cuda" : "cpu"; }

}  // namespace qf::dist
