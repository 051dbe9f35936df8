// core/parallel.hpp: parallel_for covers [0, n) once within the thread cap, parallel_for_each
// hands every item to exactly one worker, parallel_workers runs all its workers at the same time,
// and each rethrows a worker's exception only after every thread has returned.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch_compat.hpp"
#include "core/parallel.hpp"

using namespace qf;

TEST_CASE("parallel_for covers [0, n) once in contiguous chunks", "[parallel]") {
  for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1000}}) {
    for (const int64_t cap : {int64_t{0}, int64_t{1}, int64_t{3}}) {
      INFO("n " << n << " max_threads " << cap);
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int64_t> n_chunks{0};
      parallel_for(
          n,
          [&](int64_t begin, int64_t end) {
            CHECK(begin < end);
            ++n_chunks;
            for (int64_t i = begin; i < end; ++i) ++hits[size_t(i)];
          },
          cap);
      for (const auto& h : hits) CHECK(h == 1);
      if (cap > 0) CHECK(n_chunks <= cap);
    }
  }
}

TEST_CASE("parallel_for_each gives every item to one worker below n_workers", "[parallel]") {
  const int64_t n_items = 500, n_workers = 4;
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n_items));
  std::atomic<bool> worker_ok{true};
  parallel_for_each(n_items, n_workers, [&](int64_t worker, int64_t item) {
    if (worker < 0 || worker >= n_workers) worker_ok = false;
    ++hits[size_t(item)];
  });
  CHECK(worker_ok);
  for (const auto& h : hits) CHECK(h == 1);
  int64_t calls = 0;
  parallel_for_each(0, 4, [&](int64_t, int64_t) { ++calls; });
  parallel_for_each(3, 0, [&](int64_t worker, int64_t) { calls += worker == 0; });  // inline
  CHECK(calls == 3);
}

TEST_CASE("parallel_for_each stops handing out items after an exception", "[parallel]") {
  // Far more items than the other worker can run while the failing one throws (a stop that did
  // not work would run them all, in about a second).
  const int64_t n_items = int64_t{1} << 26;
  std::atomic<int64_t> n_done{0};
  CHECK_THROWS_AS(parallel_for_each(n_items, 2,
                                    [&](int64_t, int64_t item) {
                                      if (item == 10) throw std::runtime_error("item 10");
                                      ++n_done;
                                    }),
                  std::runtime_error);
  CHECK(n_done < n_items - 1);
}

TEST_CASE("parallel_workers runs every worker at once, worker 0 on the caller", "[parallel]") {
  const int64_t n_workers = 5;
  std::mutex mutex;
  std::condition_variable all_here;
  int64_t n_here = 0;
  std::vector<int> ran(size_t(n_workers), 0);
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> zero_on_caller{false};
  // A barrier: returns only once every worker has arrived, so it finishes only when all run
  // concurrently.
  parallel_workers(n_workers, [&](int64_t worker) {
    if (worker == 0) zero_on_caller = std::this_thread::get_id() == caller;
    std::unique_lock<std::mutex> lock(mutex);
    ++n_here;
    all_here.notify_all();
    all_here.wait(lock, [&] { return n_here == n_workers; });
    ran[size_t(worker)] = 1;
  });
  CHECK(zero_on_caller);
  for (int r : ran) CHECK(r == 1);
}

TEST_CASE("parallel_workers rethrows the lowest worker's exception after all return",
          "[parallel]") {
  std::atomic<int64_t> n_returned{0};
  try {
    parallel_workers(4, [&](int64_t worker) {
      ++n_returned;
      if (worker >= 2) throw std::runtime_error("worker " + std::to_string(worker));
    });
    FAIL("no exception");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "worker 2");
  }
  CHECK(n_returned == 4);
}
