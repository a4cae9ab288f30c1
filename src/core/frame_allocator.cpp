// The frame allocator's slow path: carving blocks from chunks.
#include "corio/core/detail/frame_allocator.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <vector>

namespace corio::detail {

constinit thread_local FrameAllocator::FreeBlock* FrameAllocator::heads_[FrameAllocator::kClasses] = {};
constinit thread_local char* FrameAllocator::bump_ = nullptr;
constinit thread_local char* FrameAllocator::bump_end_ = nullptr;

namespace {
constexpr std::size_t kFirstChunk = 4096;
constexpr std::size_t kMaxChunk = std::size_t{2} << 20;  // one transparent huge page
thread_local std::size_t tl_next_chunk = kFirstChunk;
// Full-size chunks are prefaulted a window at a time, ahead of the bump pointer: blocks are carved front to
// back and written at once, and one madvise(MADV_POPULATE_WRITE) (Linux >= 5.14; a no-op error before)
// maps 64 pages for the price of about one page fault. Measured here, page faults were half of W1's time
// (~670 -> ~340 ns/task on a loaded VM). At most one window of memory is made resident early.
constexpr std::size_t kPrefaultWindow = 256 * 1024;
thread_local char* tl_prefaulted = nullptr;  // end of the prefaulted part of the current chunk

// Every chunk ever made, so they stay reachable (see the header: blocks may sit on any thread's list).
std::mutex chunks_mu;
std::vector<void*>* chunks = new std::vector<void*>();

// Full-size chunks are 2 MiB-aligned, so a kernel with transparent huge pages set to "always" can back
// each with one huge page. corio does not madvise(MADV_HUGEPAGE) them. Measured here (THP "madvise", a VM
// that pays for each new page at its first touch), advising the chunks past the 16th (32 MiB, so that W2's
// 100,000 sleepers kept their 4 KiB pages: with every chunk advised they went from 247 to 252 B/task) made
// W1 take ~100 instead of ~185 ns/task in back-to-back runs, but ~300 when another process had just freed a
// few hundred MB, as scripts/bench's Python runs do: in pairs after a uvloop W2 run, a median of 256
// against 212 ns/task. /proc/vmstat's compact_stall stayed 0 throughout, so it is not direct compaction.
void* new_chunk(std::size_t size) {
  if (size < kMaxChunk) return ::operator new(size);
  return ::operator new (size, std::align_val_t{kMaxChunk});
}
}  // namespace

void* FrameAllocator::refill(std::size_t cls) {
  const std::size_t size = cls * kGranule;
  if (static_cast<std::size_t>(bump_end_ - bump_) < size) {
    // The rest of the old chunk would be wasted; give it to the free lists in the largest classes it fits.
    while (bump_ && static_cast<std::size_t>(bump_end_ - bump_) >= kGranule) {
      std::size_t rest_cls = std::min<std::size_t>((bump_end_ - bump_) / kGranule, kClasses - 1);
      auto* b = reinterpret_cast<FreeBlock*>(bump_);
      b->next = heads_[rest_cls];
      heads_[rest_cls] = b;
      bump_ += rest_cls * kGranule;
    }
    std::size_t chunk = tl_next_chunk;
    tl_next_chunk = std::min(kMaxChunk, tl_next_chunk * 2);
    bump_ = static_cast<char*>(new_chunk(chunk));
    bump_end_ = bump_ + chunk;
    // Smaller chunks are not page-aligned; they are few (2 MiB in all) and left to fault.
    tl_prefaulted = chunk == kMaxChunk ? bump_ : bump_end_;
    std::lock_guard<std::mutex> lock(chunks_mu);
    chunks->push_back(bump_);
  }
  void* p = bump_;
  bump_ += size;
#ifdef MADV_POPULATE_WRITE
  if (bump_ > tl_prefaulted) {
    const std::size_t len = std::min<std::size_t>(kPrefaultWindow, bump_end_ - tl_prefaulted);
    (void)::madvise(tl_prefaulted, len, MADV_POPULATE_WRITE);
    tl_prefaulted += len;
  }
#endif
  return p;
}

}  // namespace corio::detail
