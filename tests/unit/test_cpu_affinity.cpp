// allowed_cpu_count follows the thread's affinity mask (what mpirun's core binding sets), not
// the machine's core count; thread_count follows it unless QF_THREADS says otherwise.
#include <sched.h>

#include <cstdlib>
#include <thread>

#include "catch_compat.hpp"
#include "core/cpu_affinity.hpp"
#include "core/parallel.hpp"
#include "model/forward_linear.hpp"

TEST_CASE("allowed_cpu_count: the affinity mask, at most the online cores", "[affinity]") {
  const int online = qf::online_cpu_count();
  const int allowed = qf::allowed_cpu_count();
  CHECK(online >= 1);
  CHECK(allowed >= 1);
  CHECK(allowed <= online);

  // Pin a fresh thread (affinity is per thread on Linux) to the first core it may use. No
  // Catch2 assertion inside the thread (not thread-safe in v2): results are checked after.
  unsetenv("QF_THREADS");
  bool pinned_ok = false;
  int pinned_count = 0, pinned_threads = 0;
  std::thread pinned([&] {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return;
    int first = 0;
    while (!CPU_ISSET(first, &set)) ++first;
    CPU_ZERO(&set);
    CPU_SET(first, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) return;
    pinned_ok = true;
    pinned_count = qf::allowed_cpu_count();
    pinned_threads = static_cast<int>(qf::thread_count());
  });
  pinned.join();
  REQUIRE(pinned_ok);
  CHECK(pinned_count == 1);
  CHECK(pinned_threads == 1);
  CHECK(qf::allowed_cpu_count() == allowed);  // this thread's mask is untouched
}
