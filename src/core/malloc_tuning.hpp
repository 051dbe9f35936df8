// Process-wide glibc malloc settings for commands that free and re-allocate the same large
// buffers many times (eval decodes every expert of every layer, 33.5 MB per V4 matrix).
#pragma once

namespace qf {

// Large blocks come from the heap and freed memory stays mapped for the next allocation,
// instead of one mmap + munmap per buffer (glibc maps anything above its mmap threshold, which
// cannot be raised past 32 MB: just below one expert matrix), where every reuse page-faults and
// zero-fills the buffer again. Costs: the peak stays resident until exit. No-op off glibc.
void keep_freed_memory_for_reuse();

}  // namespace qf
