// AsyncWriter: one worker thread doing pwrite_full (and starting its writeback) for queued chunks.
#include "formats/async_writer.hpp"

#include <unistd.h>

#include "core/log.hpp"

namespace qf::formats {
namespace {

// Callers fsync at the end: have the disk write each chunk now rather than all at once then
// (dirty pages may otherwise wait for that fsync, leaving the disk idle meanwhile). The range is
// rounded down to pages: a page the next chunk completes is left to that chunk's call, so that
// chunks written in file order never send a page to the disk twice.
void start_writeback_of_full_pages(const FileDescriptor& fd, uint64_t offset, uint64_t n_bytes) {
  static const uint64_t page = [] {
    const long n = ::sysconf(_SC_PAGESIZE);
    return n > 0 ? uint64_t(n) : uint64_t{4096};
  }();
  const uint64_t begin = offset / page * page, end = (offset + n_bytes) / page * page;
  if (end > begin) start_writeback(fd, begin, end - begin);
}

}  // namespace

AsyncWriter::AsyncWriter(int n_buffers) : free_(n_buffers), worker_([this] { run(); }) {}

AsyncWriter::~AsyncWriter() {
  try {
    drain();
  } catch (const std::exception& e) {
    log_error("background write failed: ", e.what());
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void AsyncWriter::rethrow_locked() {
  if (error_) {
    auto error = error_;
    error_ = nullptr;
    std::rethrow_exception(error);
  }
}

std::vector<uint8_t> AsyncWriter::acquire() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return !free_.empty() || error_; });
  rethrow_locked();
  auto buffer = std::move(free_.back());
  free_.pop_back();
  return buffer;
}

void AsyncWriter::submit(const FileDescriptor& fd, uint64_t offset, std::vector<uint8_t>&& buffer,
                         uint64_t n_bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(Job{&fd, offset, std::move(buffer), n_bytes});
    ++n_in_flight_;
  }
  changed_.notify_all();
}

void AsyncWriter::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return n_in_flight_ == 0; });
  rethrow_locked();
}

void AsyncWriter::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    changed_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping with nothing queued
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    std::exception_ptr failure;
    try {
      pwrite_full(*job.fd, job.buffer.data(), job.n_bytes, job.offset);
      start_writeback_of_full_pages(*job.fd, job.offset, job.n_bytes);
    } catch (...) {
      failure = std::current_exception();
    }
    lock.lock();
    if (failure && !error_) error_ = failure;
    if (!failure) bytes_written_ += job.n_bytes;
    free_.push_back(std::move(job.buffer));
    --n_in_flight_;
    changed_.notify_all();
  }
}

}  // namespace qf::formats
