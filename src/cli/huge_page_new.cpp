// operator new for the executable: blocks of 4 MiB and more (an expert's weight and up) come
// 2 MiB-aligned and marked for transparent huge pages (madvise MADV_HUGEPAGE). Why: a job
// faults in gigabytes of fresh buffers per layer (source reads, hidden states, NVFP4 records),
// and with 4 KiB pages a virtual machine faults them at 0.3-1 GB/s (this repo's CI machine:
// 4 GiB zero-filled in 11.7 s, in 0.35 s once madvised; kernels with THP "never" ignore the
// hint). Smaller blocks are plain malloc. delete stays libstdc++'s (free), which frees both
// kinds. Not in sanitizer builds: their runtimes own new/delete (and pair them, which a malloc
// here would break).
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define QF_SANITIZED_NEW 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define QF_SANITIZED_NEW 1
#endif

#ifndef QF_SANITIZED_NEW
#include <stdlib.h>
#include <sys/mman.h>

#include <cstdlib>
#include <new>

namespace {

constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;
constexpr std::size_t kHugeBlockBytes = std::size_t{4} << 20;
constexpr std::size_t kPageBytes = 4096;

void* allocate(std::size_t n_bytes) {
  if (n_bytes == 0) n_bytes = 1;
  void* p = nullptr;
  if (n_bytes >= kHugeBlockBytes) {
    if (::posix_memalign(&p, kHugePageBytes, n_bytes) != 0) p = nullptr;
    const std::size_t whole_pages = (n_bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
    if (p != nullptr) (void)::madvise(p, whole_pages, MADV_HUGEPAGE);  // a hint: failure is fine
  } else {
    p = std::malloc(n_bytes);
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t n_bytes) { return allocate(n_bytes); }
void* operator new[](std::size_t n_bytes) { return allocate(n_bytes); }
#endif  // QF_SANITIZED_NEW
