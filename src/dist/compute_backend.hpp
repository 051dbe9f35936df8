// Which compute backend a job uses: the plain C++ reference (cpu) or CUDA kernels (cuda), and
// which communicator carries the CUDA calibration's traffic. Owns: the --backend and --comm
// tables and their resolution against this build and machine. Does not own the kernels.
#pragma once
#include <string>

#include "core/enum_table.hpp"
#include "dist/communicator.hpp"

namespace qf::dist {

enum class ComputeBackend { kCpu, kCuda };

// --backend: a backend, or auto.
enum class BackendChoice { kAuto, kCpu, kCuda };
const EnumTable<BackendChoice>& backend_choices();  // parse, name and --help of --backend
// auto picks cuda when this build has CUDA and a GPU is visible, else cpu. cuda on a build or
// machine without it is an error naming why.
ComputeBackend resolve_backend(BackendChoice choice);
const char* backend_name(ComputeBackend backend);  // "cpu" | "cuda", as --backend names them
// Number of visible CUDA devices (0 in CPU-only builds or without a driver).
int cuda_device_count();
// One rank per GPU: binds this process to device local_rank % count (no-op without CUDA).
void select_cuda_device(int local_rank);

// --comm: what carries the CUDA calibration's layer weights and input amax (the host
// communicator, MPI, always does the rest).
enum class CommChoice { kAuto, kMpi, kNccl };
const EnumTable<CommChoice>& comm_choices();  // parse, name and --help of --comm
// The communicator of `choice` for a job on `backend`. auto: nccl for the cuda backend when
// every rank has a GPU of its own (NCCL refuses two ranks on one GPU; every_rank_own_gpu must be
// the same on every rank), else mpi. nccl with the cpu backend, in a build without CUDA or with
// ranks sharing a GPU is an error naming why.
Backend resolve_comm(CommChoice choice, ComputeBackend backend, bool every_rank_own_gpu);

}  // namespace qf::dist
