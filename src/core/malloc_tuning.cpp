#include "core/malloc_tuning.hpp"

#include <climits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace qf {

void keep_freed_memory_for_reuse() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);              // no mmap'd blocks: every size comes from the heap
  mallopt(M_TRIM_THRESHOLD, INT_MAX);  // and freed memory at its top is kept, not unmapped
#endif
}

}  // namespace qf
