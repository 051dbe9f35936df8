// How many CPU cores this process may run on. mpirun binds each rank to one core by default
// (Open MPI, 2 ranks or fewer), which std::thread::hardware_concurrency does not see: the I/O,
// conversion and CPU-forward threads would all share that core.
#pragma once

namespace qf {

// Cores in the calling thread's affinity mask (sched_getaffinity); >= 1.
int allowed_cpu_count();
// Cores online on this machine; >= 1.
int online_cpu_count();

}  // namespace qf
