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

const EnumTable<BackendChoice>& backend_choices() {
  static const EnumTable<BackendChoice> table(
      "--backend",
      {{"auto", BackendChoice::kAuto,
        "cuda when this build has CUDA and a GPU is visible, else cpu"},
       {"cpu", BackendChoice::kCpu, "the plain C++ reference on the host"},
       {"cuda", BackendChoice::kCuda, "CUDA kernels on this rank's GPU (local rank % GPUs)"}});
  return table;
}

ComputeBackend resolve_backend(BackendChoice choice) {
  switch (choice) {
    case BackendChoice::kCpu:
      return ComputeBackend::kCpu;
    case BackendChoice::kAuto:
      return cuda_device_count() > 0 ? ComputeBackend::kCuda : ComputeBackend::kCpu;
    case BackendChoice::kCuda:
      break;
  }
#ifndef QF_HAVE_CUDA
  QF_FAIL("--backend cuda: this quantforge was built without CUDA (QF_CUDA=OFF)");
#endif
  QF_CHECK(cuda_device_count() > 0, "--backend cuda: no CUDA device is visible");
  return ComputeBackend::kCuda;
}

const char* backend_name(ComputeBackend backend) {
  return backend_choices().name(backend == ComputeBackend::kCuda ? BackendChoice::kCuda
                                                                 : BackendChoice::kCpu);
}

const EnumTable<CommChoice>& comm_choices() {
  static const EnumTable<CommChoice> table(
      "--comm",
      {{"auto", CommChoice::kAuto,
        "nccl for the cuda backend when every rank has its own GPU, else mpi"},
       {"mpi", CommChoice::kMpi, "host buffers: owners broadcast, every rank uploads the layer"},
       {"nccl", CommChoice::kNccl,
        "each owner uploads its own linears and NCCL broadcasts them GPU to GPU, amax "
        "all-reduced on the GPU (needs --backend cuda and one GPU per rank)"}});
  return table;
}

Backend resolve_comm(CommChoice choice, ComputeBackend backend, bool every_rank_own_gpu) {
  if (choice == CommChoice::kMpi) return Backend::kMpi;
  if (choice == CommChoice::kAuto) {
    return backend == ComputeBackend::kCuda && every_rank_own_gpu &&
                   dist::backend_available(Backend::kNccl)
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

}  // namespace qf::dist
