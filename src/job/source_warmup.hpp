// SourceWarmup: the disk starts on the source while the process starts (issue 19). On a GPU
// machine the CUDA context and the NCCL communicator take 2-4 s before the job reads anything;
// a background thread asks the kernel to read ahead (formats::advise_will_need) what this rank
// reads first: the embedding (its owner's) and the rank's share of layer 0, in file order.
// Nothing is read into the process, and any error (a bad source, a plan that does not build) only
// ends the warm-up: the job reports its own when it opens the source. Skipped on --resume,
// --export-only and --shard, which may not read layer 0 at all.
// Owns: the thread. Does not own what the job reads later (the page cache is the hand-over).
#pragma once
#include <atomic>
#include <thread>

#include "job/quantize_job.hpp"

namespace qf::pipeline {

class SourceWarmup {
 public:
  SourceWarmup(const QuantizeOptions& options, int rank, int world_size);
  ~SourceWarmup();  // stops after the request in flight and joins
  SourceWarmup(const SourceWarmup&) = delete;
  SourceWarmup& operator=(const SourceWarmup&) = delete;

  // Bytes asked for so far (for tests and logs).
  uint64_t n_bytes_advised() const { return n_advised_.load(); }
  // Waits for the thread (tests).
  void join();

 private:
  void run(const QuantizeOptions& options, int rank, int world_size);

  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> n_advised_{0};
  std::thread thread_;
};

}  // namespace qf::pipeline
