// keep_freed_memory_for_reuse: after it, a block far above glibc's mmap threshold comes from
// the heap (no mmap'd block), and freeing it keeps the memory for the next one.
#include <cstdlib>
#include <cstring>

#include "catch_compat.hpp"
#include "core/malloc_tuning.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

// Sanitizers replace malloc: glibc's arena (and what mallinfo2 reports) is not in use then.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define QF_SANITIZED_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define QF_SANITIZED_MALLOC 1
#endif
#endif

TEST_CASE("keep_freed_memory_for_reuse: large blocks from the heap, kept after free", "[malloc]") {
#if defined(QF_SANITIZED_MALLOC)
  SUCCEED("a sanitizer's malloc: glibc's tuning does not apply");
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  constexpr size_t kBytes = size_t{64} << 20;  // above glibc's 32 MB mmap-threshold ceiling
  const auto mapped_blocks = [] { return mallinfo2().hblks; };
  const size_t before = mapped_blocks();
  {
    void* p = std::malloc(kBytes);  // default settings: an mmap'd block
    REQUIRE(p != nullptr);
    std::memset(p, 1, 4096);
    CHECK(mapped_blocks() == before + 1);
    std::free(p);
  }
  qf::keep_freed_memory_for_reuse();
  void* p = std::malloc(kBytes);
  REQUIRE(p != nullptr);
  std::memset(p, 1, 4096);
  CHECK(mapped_blocks() == before);  // from the heap now
  std::free(p);
  const size_t kept = mallinfo2().fordblks;  // free bytes held by malloc
  CHECK(kept >= kBytes);                     // not trimmed back to the system
#else
  SUCCEED("not glibc >= 2.33: nothing to check");
#endif
}
