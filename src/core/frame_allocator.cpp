// The frame allocator's slow paths: carving blocks from chunks, blocks freed on another thread than their
// owner's, and heaps left by threads that exit.
#include "corio/core/detail/frame_allocator.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace corio::detail {

constinit thread_local FrameAllocator::FreeBlock* FrameAllocator::heads_[FrameAllocator::kClasses] = {};
constinit thread_local char* FrameAllocator::bump_ = nullptr;
constinit thread_local char* FrameAllocator::bump_end_ = nullptr;
constinit thread_local FrameAllocator::Heap* FrameAllocator::heap_ = nullptr;

struct FrameAllocator::Heap {
  // Blocks of this heap's chunks freed on other threads, each with its size class; the owner takes them
  // all at once (exchange), so the list has one consumer and no ABA problem.
  std::atomic<FreeBlock*> remote{nullptr};
  std::size_t carved = 0;      // bytes of chunks made for this heap
  char* prefaulted = nullptr;  // end of the prefaulted part of the current chunk
  std::size_t window = 4096;   // the next prefault's size (doubles up to kPrefaultWindow)
  // Saved by the thread that leaves the heap, taken back by the thread that adopts it.
  FreeBlock* heads[kClasses] = {};
  char* bump = nullptr;
  char* bump_end = nullptr;
  Heap* next_abandoned = nullptr;
};

namespace {
// The chunk's first word names its heap; blocks start after one cache line.
constexpr std::size_t kHeader = 64;
// Chunks are prefaulted a window at a time, ahead of the bump pointer: blocks are carved front to back and
// written at once, and one madvise(MADV_POPULATE_WRITE) (Linux >= 5.14; a no-op error before) maps up to
// 64 pages for the price of about one page fault. Measured here, page faults were half of W1's time
// (~670 -> ~340 ns/task on a loaded VM). The window starts at one page and doubles, so a thread that makes
// a few frames keeps a few KiB resident; at most one window of memory is made resident early.
constexpr std::size_t kPrefaultWindow = 256 * 1024;

// Every chunk ever made, so they stay reachable (see the header: blocks may sit on any thread's list).
std::mutex chunks_mu;
// Made on first use (constinit: a global object's constructor may make the first frame, before this
// file's dynamic initialisation has run); never destroyed (exit order).
constinit std::vector<void*>* chunks = nullptr;  // guarded by chunks_mu
// Heaps whose threads have exited, for the next new thread to take over.
FrameAllocator::Heap* abandoned = nullptr;  // guarded by chunks_mu
// Set when this thread's heap was left (thread exit): a block made after that gets a heap of its own that
// is never left (a frame made by another thread_local's destructor; rare).
constinit thread_local bool tl_exiting = false;

// Chunks are 2 MiB-aligned, so a kernel with transparent huge pages set to "always" can back each with one
// huge page. corio does not madvise(MADV_HUGEPAGE) them. Measured here (THP "madvise", a VM that pays for
// each new page at its first touch), advising the chunks past the 16th (32 MiB, so that W2's 100,000
// sleepers kept their 4 KiB pages: with every chunk advised they went from 247 to 252 B/task) made W1 take
// ~100 instead of ~185 ns/task in back-to-back runs, but ~300 when another process had just freed a few
// hundred MB, as scripts/bench's Python runs do: in pairs after a uvloop W2 run, a median of 256 against
// 212 ns/task. /proc/vmstat's compact_stall stayed 0 throughout, so it is not direct compaction.
void* new_chunk() {
  void* p = ::operator new (FrameAllocator::kChunk, std::align_val_t{FrameAllocator::kChunk});
  std::lock_guard<std::mutex> lock(chunks_mu);
  if (!chunks) chunks = new std::vector<void*>();
  chunks->push_back(p);
  return p;
}
}  // namespace

// Leaves the thread's heap, free lists and all, for another thread when this one exits.
struct FrameAllocator::HeapExit {
  ~HeapExit() {
    Heap* h = heap_;
    if (!h) return;
    std::copy(std::begin(heads_), std::end(heads_), std::begin(h->heads));
    std::fill(std::begin(heads_), std::end(heads_), nullptr);
    h->bump = std::exchange(bump_, nullptr);
    h->bump_end = std::exchange(bump_end_, nullptr);
    heap_ = nullptr;  // blocks freed here from now on go to h's remote list
    tl_exiting = true;
    std::lock_guard<std::mutex> lock(chunks_mu);
    h->next_abandoned = abandoned;
    abandoned = h;
  }
};

void FrameAllocator::acquire_heap() {
  Heap* h = nullptr;
  if (!tl_exiting) {
    std::lock_guard<std::mutex> lock(chunks_mu);
    if ((h = abandoned)) abandoned = h->next_abandoned;
  }
  if (h) {
    std::copy(std::begin(h->heads), std::end(h->heads), std::begin(heads_));
    std::fill(std::begin(h->heads), std::end(h->heads), nullptr);
    bump_ = std::exchange(h->bump, nullptr);
    bump_end_ = std::exchange(h->bump_end, nullptr);
  } else {
    h = new Heap();  // never freed: its chunks name it
  }
  heap_ = h;
  if (!tl_exiting) {
    static thread_local HeapExit exit_guard;  // constructed here, once per thread
    (void)exit_guard;
  }
}

void FrameAllocator::take_remote() noexcept {
  FreeBlock* b = heap_->remote.exchange(nullptr, std::memory_order_acquire);
  while (b) {
    FreeBlock* next = b->next;
    b->next = heads_[b->cls];
    heads_[b->cls] = b;
    b = next;
  }
}

void FrameAllocator::free_remote(FreeBlock* b, std::size_t cls) noexcept {
  Heap* h = owner_of(b);
  b->cls = cls;
  FreeBlock* head = h->remote.load(std::memory_order_relaxed);
  do {
    b->next = head;
  } while (!h->remote.compare_exchange_weak(head, b, std::memory_order_release, std::memory_order_relaxed));
}

void FrameAllocator::new_chunk_for_heap() {
  // The rest of the old chunk would be wasted; give it to the free lists in the largest classes it fits.
  while (bump_ && static_cast<std::size_t>(bump_end_ - bump_) >= kGranule) {
    std::size_t rest_cls = std::min<std::size_t>((bump_end_ - bump_) / kGranule, kClasses - 1);
    auto* b = reinterpret_cast<FreeBlock*>(bump_);
    b->next = heads_[rest_cls];
    heads_[rest_cls] = b;
    bump_ += rest_cls * kGranule;
  }
  char* chunk = static_cast<char*>(new_chunk());
  *reinterpret_cast<Heap**>(chunk) = heap_;
  bump_ = chunk + kHeader;
  bump_end_ = chunk + kChunk;
  heap_->prefaulted = chunk;
  heap_->carved += kChunk;
}

std::size_t FrameAllocator::carved_bytes() noexcept { return heap_ ? heap_->carved : 0; }

void* FrameAllocator::refill(std::size_t cls) {
  const std::size_t size = cls * kGranule;
  if (static_cast<std::size_t>(bump_end_ - bump_) < size) [[unlikely]] {
    // Before taking more memory, take back the blocks other threads freed (so memory handed across threads
    // is reused: at most one chunk is carved while they wait).
    if (!heap_) acquire_heap();
    if (heap_->remote.load(std::memory_order_relaxed)) take_remote();
    if (FreeBlock* b = heads_[cls]) {  // given back by other threads (or an adopted heap's)
      heads_[cls] = b->next;
      return b;
    }
    if (static_cast<std::size_t>(bump_end_ - bump_) < size) new_chunk_for_heap();
  }
  void* p = bump_;
  bump_ += size;
#ifdef MADV_POPULATE_WRITE
  Heap& h = *heap_;
  if (bump_ > h.prefaulted) {
    const std::size_t len = std::min<std::size_t>(h.window, bump_end_ - h.prefaulted);
    (void)::madvise(h.prefaulted, len, MADV_POPULATE_WRITE);
    h.prefaulted += len;
    h.window = std::min(kPrefaultWindow, h.window * 2);
  }
#endif
  return p;
}

}  // namespace corio::detail
