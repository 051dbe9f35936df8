// The project's one CPU fan-out: a static split of [0, n) over the threads this rank may use.
// Owns the thread count rule (QF_THREADS, else the CPU affinity mask). Does not own any work.
#pragma once
#include <cstdint>
#include <functional>

namespace qf {

// Runs fn(begin, end) over [0, n) split into contiguous chunks on up to thread_count()
// threads. Results must not depend on the split. The first exception of a chunk is rethrown
// after every thread has joined.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

// The CPU threads the project uses: QF_THREADS if set (> 0), else the cores this process may
// run on (its affinity mask: mpirun may have bound it to fewer than the host has).
int64_t thread_count();

}  // namespace qf
