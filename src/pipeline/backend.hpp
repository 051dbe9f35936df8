// Which compute backend a job uses: the plain C++ reference (cpu) or CUDA kernels (cuda).
// Owns: parsing and resolving `--backend auto|cpu|cuda`. Does not own the kernels.
#pragma once
#include <string>

namespace qf::pipeline {

enum class Backend { kCpu, kCuda };

// "auto" picks cuda when this build has CUDA and a GPU is visible, else cpu. "cuda" on a
// build or machine without it is an error naming why.
Backend resolve_backend(const std::string& name);
const char* backend_name(Backend backend);
// Number of visible CUDA devices (0 in CPU-only builds or without a driver).
int cuda_device_count();
// One rank per GPU: binds this process to device local_rank % count (no-op without CUDA).
void select_cuda_device(int local_rank);

}  // namespace qf::pipeline
