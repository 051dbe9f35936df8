// parallel_for, parallel_for_each, parallel_workers and thread_count.
#include "core/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "core/cpu_affinity.hpp"

namespace qf {

int64_t thread_count() {
  if (const char* env = std::getenv("QF_THREADS")) {
    const long n = std::strtol(env, nullptr, 10);
    if (n > 0) return n;
  }
  return allowed_cpu_count();  // the cores this rank may use (mpirun may have bound it)
}

void parallel_workers(int64_t n_workers, const std::function<void(int64_t worker)>& fn) {
  if (n_workers <= 0) return;
  if (n_workers == 1) return fn(0);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n_workers));
  // Every started thread waits at this gate until all exist, or until one could not be started.
  std::mutex mutex;
  std::condition_variable gate;
  bool open = false, aborted = false;
  const auto run = [&](int64_t worker) {
    {
      std::unique_lock<std::mutex> lock(mutex);
      gate.wait(lock, [&] { return open || aborted; });
      if (aborted) return;
    }
    try {
      fn(worker);
    } catch (...) {
      errors[size_t(worker)] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  try {
    threads.reserve(size_t(n_workers - 1));
    for (int64_t w = 1; w < n_workers; ++w) threads.emplace_back(run, w);
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      aborted = true;
    }
    gate.notify_all();
    for (auto& thread : threads) thread.join();
    throw;
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    open = true;
  }
  gate.notify_all();
  run(0);
  for (auto& thread : threads) thread.join();
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t max_threads) {
  if (n <= 0) return;
  int64_t n_threads = std::min<int64_t>(thread_count(), n);
  if (max_threads > 0) n_threads = std::min(n_threads, max_threads);
  if (n_threads <= 1) {
    fn(0, n);
    return;
  }
  const int64_t chunk = (n + n_threads - 1) / n_threads;
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  parallel_workers(n_chunks, [&](int64_t t) { fn(t * chunk, std::min(n, (t + 1) * chunk)); });
}

void parallel_for_each(int64_t n_items, int64_t n_workers,
                       const std::function<void(int64_t worker, int64_t item)>& fn) {
  if (n_items <= 0) return;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  parallel_workers(std::clamp<int64_t>(n_workers, 1, n_items), [&](int64_t worker) {
    try {
      for (int64_t i = next++; i < n_items && !failed; i = next++) fn(worker, i);
    } catch (...) {
      failed = true;
      throw;
    }
  });
}

}  // namespace qf
