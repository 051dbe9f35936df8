// The project's one CPU fan-out: threads started and joined in one place, the first exception
// rethrown after every thread has joined. Owns the thread count rule (QF_THREADS, else the CPU
// affinity mask). Does not own any work.
#pragma once
#include <cstdint>
#include <functional>

namespace qf {

// Runs fn(begin, end) over [0, n) split into contiguous chunks on up to thread_count() threads
// (and at most max_threads, when > 0). Results must not depend on the split. The first
// exception of a chunk is rethrown after every thread has joined.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                  int64_t max_threads = 0);

// Runs fn(worker, item) for every item in [0, n_items) on min(n_workers, n_items) workers, each
// worker taking the next item as it finishes one (dynamic: items of unequal cost balance). For
// workers that own state (fn indexes it by `worker`) or when results must not depend on which
// worker ran an item. An exception stops handing out items; the first (lowest worker) is
// rethrown after every worker has returned.
void parallel_for_each(int64_t n_items, int64_t n_workers,
                       const std::function<void(int64_t worker, int64_t item)>& fn);

// Runs fn(worker) for every worker in [0, n_workers) at the same time, worker 0 on the calling
// thread: the fan-out the two above are built on, for pools whose workers talk to each other
// (one sinks what the others produce). Either every worker starts or none does (a thread that
// cannot be started is reported before any fn runs, so no worker waits for a missing peer).
// The first exception (lowest worker) is rethrown after every worker has returned.
void parallel_workers(int64_t n_workers, const std::function<void(int64_t worker)>& fn);

// The CPU threads the project uses: QF_THREADS if set (> 0), else the cores this process may
// run on (its affinity mask: mpirun may have bound it to fewer than the host has).
int64_t thread_count();

}  // namespace qf
