// Background pwrite of converted chunks, so that writing chunk i overlaps reading and converting
// chunk i+1 (double buffering). Owns: a worker thread, a bounded set of buffers, the first write
// error. Does not own the files (callers keep the FileDescriptors alive until drain(), and fsync
// them: each chunk's writeback is started as it is written, so that fsync finds little left).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "formats/posix_file.hpp"

namespace qf::formats {

class AsyncWriter {
 public:
  explicit AsyncWriter(int n_buffers = 2);
  ~AsyncWriter();  // drains; logs (never throws) a pending error
  AsyncWriter(const AsyncWriter&) = delete;
  AsyncWriter& operator=(const AsyncWriter&) = delete;

  // A free buffer (blocks while all are in flight); rethrows a failed write.
  std::vector<uint8_t> acquire();
  // Queues buffer[0, n_bytes) for pwrite at `offset` of `fd`; the buffer comes back to the pool.
  void submit(const FileDescriptor& fd, uint64_t offset, std::vector<uint8_t>&& buffer,
              uint64_t n_bytes);
  // Waits for every queued write; rethrows the first failure.
  void drain();
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  struct Job {
    const FileDescriptor* fd;
    uint64_t offset;
    std::vector<uint8_t> buffer;
    uint64_t n_bytes;
  };
  void run();
  void rethrow_locked();

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Job> jobs_;
  std::vector<std::vector<uint8_t>> free_;
  int n_in_flight_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
  uint64_t bytes_written_ = 0;
  std::thread worker_;
};

}  // namespace qf::formats
