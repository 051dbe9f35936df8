// SectionTimer: cudaEvents between marks, summed per section name.
#include <algorithm>
#include <cstdio>

#include "core/check.hpp"
#include "core/log.hpp"
#include "gpu/section_timer.hpp"

namespace qf::gpu {

SectionTimer::SectionTimer(cudaStream_t stream, bool enabled)
    : enabled_(enabled), stream_(stream) {}

SectionTimer::~SectionTimer() {
  for (cudaEvent_t e : pool_) cudaEventDestroy(e);
}

cudaEvent_t SectionTimer::next_event() {
  if (used_ == pool_.size()) {
    cudaEvent_t e = nullptr;
    QF_CUDA_CHECK(cudaEventCreate(&e), "profile event");
    pool_.push_back(e);
  }
  return pool_[used_++];
}

void SectionTimer::mark(const char* name) {
  if (!enabled_) return;
  cudaEvent_t e = next_event();
  QF_CUDA_CHECK(cudaEventRecord(e, stream_), "profile event record");
  marks_.emplace_back(name, e);
}

void SectionTimer::flush() {
  if (!enabled_ || marks_.empty()) return;
  mark("");  // closes the last section
  QF_CUDA_CHECK(cudaEventSynchronize(marks_.back().second), "profile sync");
  for (size_t i = 0; i + 1 < marks_.size(); ++i) {
    float ms = 0;
    QF_CUDA_CHECK(cudaEventElapsedTime(&ms, marks_[i].second, marks_[i + 1].second),
                  "profile elapsed");
    const std::string& name = marks_[i].first;
    if (name.empty()) continue;
    if (!totals_ms_.count(name)) order_.push_back(name);
    totals_ms_[name] += ms;
  }
  marks_.clear();
  used_ = 0;
}

void SectionTimer::report(const std::string& title) {
  if (!enabled_) return;
  flush();
  double total = 0;
  for (const auto& [name, ms] : totals_ms_) total += ms;
  std::string text = title + ": GPU " + std::to_string(static_cast<int64_t>(total)) + " ms";
  for (const auto& name : order_) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), " | %s %.1f ms (%.0f%%)", name.c_str(), totals_ms_[name],
                  total > 0 ? 100.0 * totals_ms_[name] / total : 0.0);
    text += buf;
  }
  log_info(text);
  totals_ms_.clear();
  order_.clear();
}

}  // namespace qf::gpu
