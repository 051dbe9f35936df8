// Which compute backend a job uses: the plain C++ reference (cpu) or CUDA kernels (cuda).
// Owns: parsing and resolving `--backend auto|cpu|cuda` and `--comm auto|mpi|nccl`. Does not own the kernels.
#pragma once
#include <string>

#include "dist/communicator.hpp"

namespace qf::dist {

enum class ComputeBackend { kCpu, kCuda };

// "auto" picks cuda when this build has CUDA and a GPU is visible, else cpu. "cuda" on a
// build or machine without it is an error naming why.
ComputeBackend resolve_backend(const std::string& name);
const char* backend_name(ComputeBackend backend);
// Number of visible CUDA devices (0 in CPU-only builds or without a driver).
int cuda_device_count();
// One rank per GPU: binds this process to device local_rank % count (no-op without CUDA).
void select_cuda_device(int local_rank);

// `--comm auto|mpi|nccl` of a job on `backend`: what carries the CUDA calibration's layer
// weights and input amax (the host communicator, MPI, always does the rest). auto: nccl for
// the cuda backend when every rank has a GPU of its own (NCCL refuses two ranks on one GPU;
// every_rank_own_gpu must be the same on every rank), else mpi. nccl with the cpu backend, in
// a build without CUDA or with ranks sharing a GPU is an error naming why.
Backend resolve_comm(const std::string& name, ComputeBackend backend, bool every_rank_own_gpu);

}  // namespace qf::dist
