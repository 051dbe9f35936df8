// NVTX ranges for Nsight timelines (STYLE.md 8): QF_NVTX_RANGE("name") opens a range that closes
// at the end of the enclosing scope. CUDA builds use NVTX3 (header-only, part of the CUDA
// toolkit, nothing to link): without a profiler attached a range costs one call through an
// unset function pointer. CPU-only builds compile every range to nothing.
// Owns: the range type. Does not own naming conventions beyond "<module>: <phase>" by habit.
#pragma once
#include <string>

#ifdef QF_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace qf {

// A push/pop pair on the calling thread's NVTX range stack (one thread only: do not move it).
class NvtxRange {
 public:
#ifdef QF_HAVE_CUDA
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  explicit NvtxRange(const std::string& name) { nvtxRangePushA(name.c_str()); }
  ~NvtxRange() { nvtxRangePop(); }
#else
  explicit NvtxRange(const char*) {}
  explicit NvtxRange(const std::string&) {}
  ~NvtxRange() {}
#endif
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace qf

#define QF_NVTX_CONCAT_INNER_(a, b) a##b
#define QF_NVTX_CONCAT_(a, b) QF_NVTX_CONCAT_INNER_(a, b)
// A range named `name` (const char* or std::string) until the end of the enclosing scope.
#define QF_NVTX_RANGE(name) const ::qf::NvtxRange QF_NVTX_CONCAT_(qf_nvtx_range_, __LINE__)(name)
