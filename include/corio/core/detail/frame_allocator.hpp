// Per-thread recycling allocator for coroutine frames and task states: a finished task costs no system
// call. Blocks are grouped in 16-byte size classes up to kMaxPooled bytes; larger ones go to operator new.
// New blocks are carved from 2 MiB chunks, 2 MiB-aligned (no per-block malloc header); each chunk begins
// with the address of the heap that owns it, so a block's owner is one mask and one load away. A block
// freed by its owner's thread goes on that thread's free list for its size class. A block freed on another
// thread (a frame made by a thread that called run_coroutine_threadsafe and destroyed on the loop's) goes
// back to its owner through the owner's lock-free remote list, which the owner takes in when it next runs
// short of blocks: so memory handed across threads is reused, not carved anew on one side and piled up on
// the other. A thread that exits leaves its heap, free lists included, for the next thread to start
// (chunks are never returned to the system; they stay reachable from a global list, so leak checkers see
// them as in use). A chunk's pages become resident as blocks are carved from it, so a thread that only
// creates a few frames keeps only a few KiB. Built with CORIO_NO_FRAME_POOL (CMake: CORIO_FRAME_POOL=OFF),
// every block comes from operator new, so that AddressSanitizer sees a use after free of a frame or a task
// state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

namespace corio::detail {

class FrameAllocator {
 public:
  static constexpr std::size_t kGranule = 16;
  static constexpr std::size_t kMaxPooled = 1024;
  static constexpr std::size_t kClasses = kMaxPooled / kGranule + 1;
  static constexpr std::size_t kChunk = std::size_t{2} << 20;  // one transparent huge page

  static void* allocate(std::size_t n) {
#ifdef CORIO_NO_FRAME_POOL
    return ::operator new(n);
#endif
    if (n <= kMaxPooled) {
      std::size_t c = (n + kGranule - 1) / kGranule;
      if (FreeBlock* b = heads_[c]) {
        heads_[c] = b->next;
        return b;
      }
      return refill(c);
    }
    return ::operator new(n);
  }

  static void deallocate(void* p, std::size_t n) noexcept {
#ifdef CORIO_NO_FRAME_POOL
    ::operator delete(p);
    return;
#endif
    if (n <= kMaxPooled) {
      std::size_t c = (n + kGranule - 1) / kGranule;
      auto* b = static_cast<FreeBlock*>(p);
      if (owner_of(p) == heap_) [[likely]] {
        b->next = heads_[c];
        heads_[c] = b;
      } else {
        free_remote(b, c);
      }
      return;
    }
    ::operator delete(p);
  }

  // Whether frames and task states come from the pools (false when built with CORIO_NO_FRAME_POOL).
  static constexpr bool pooled() noexcept {
#ifdef CORIO_NO_FRAME_POOL
    return false;
#else
    return true;
#endif
  }
  struct Heap;  // one thread's chunks and remote free list (src/core/frame_allocator.cpp)
  // Bytes of chunks the calling thread's heap has carved blocks from (introspection, for tests).
  static std::size_t carved_bytes() noexcept;

 private:
  struct FreeBlock {
    FreeBlock* next;
    std::size_t cls;  // on a remote list only: the block's size class
  };
  // The heap owning the chunk p lies in: the chunk's first word.
  static Heap* owner_of(void* p) noexcept {
    return *reinterpret_cast<Heap* const*>(reinterpret_cast<std::uintptr_t>(p) & ~(kChunk - 1));
  }
  struct HeapExit;
  static void* refill(std::size_t cls);
  static void acquire_heap();
  static void take_remote() noexcept;
  static void new_chunk_for_heap();
  [[gnu::noinline]] static void free_remote(FreeBlock* b, std::size_t cls) noexcept;
  // Trivially destructible and constinit, so the hot path needs no TLS guard (without constinit, an access
  // from another translation unit still calls the TLS wrapper when one may exist).
  static constinit thread_local FreeBlock* heads_[kClasses];
  static constinit thread_local char* bump_;  // next free byte of the current chunk
  static constinit thread_local char* bump_end_;
  static constinit thread_local Heap* heap_;  // this thread's heap; null before its first block
};

// Mixin giving a class the recycling allocator.
struct PooledAlloc {
  static void* operator new(std::size_t n) { return FrameAllocator::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { FrameAllocator::deallocate(p, n); }
};

}  // namespace corio::detail
