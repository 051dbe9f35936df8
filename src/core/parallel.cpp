// parallel_for and thread_count.
#include "core/parallel.hpp"

#include <algorithm>
#include <cstdlib>
#include <exception>
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

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t n_threads = std::min<int64_t>(thread_count(), n);
  if (n_threads <= 1) {
    fn(0, n);
    return;
  }
  const int64_t chunk = (n + n_threads - 1) / n_threads;
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(n_threads);
  for (int64_t t = 0; t < n_threads; ++t) {
    const int64_t begin = t * chunk, end = std::min(n, begin + chunk);
    if (begin >= end) break;
    threads.emplace_back([&, t, begin, end] {
      try {
        fn(begin, end);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace qf
