// Optional GPU time per named section of a stream's work (enabled by the owner, e.g.
// DecoderLayerPolicy::profile_sections, which the job sets from QF_PROFILE=1): mark(name) closes
// the previous section and opens `name`; flush() waits, adds the elapsed times to per-name
// totals; report() logs them. Disabled, every call is a no-op.
// Owns: timing events and totals. Does not own the stream or the decision to time.
#pragma once
#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace qf::gpu {

class SectionTimer {
 public:
  SectionTimer(cudaStream_t stream, bool enabled);
  ~SectionTimer();
  SectionTimer(const SectionTimer&) = delete;
  SectionTimer& operator=(const SectionTimer&) = delete;

  bool enabled() const { return enabled_; }
  void mark(const char* name);
  void flush();
  void report(const std::string& title);  // logs and clears the totals

 private:
  cudaEvent_t next_event();
  bool enabled_ = false;
  cudaStream_t stream_;
  std::vector<cudaEvent_t> pool_;
  size_t used_ = 0;
  std::vector<std::pair<std::string, cudaEvent_t>> marks_;
  std::map<std::string, double> totals_ms_;
  std::vector<std::string> order_;
};

}  // namespace qf::gpu
#endif  // QF_HAVE_CUDA
