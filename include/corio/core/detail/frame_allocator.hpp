// Per-thread recycling allocator for coroutine frames and task states: a finished task costs no system
// call. Blocks are grouped in 16-byte size classes up to kMaxPooled bytes; larger ones go to operator new.
// New blocks are carved from per-thread chunks (no per-block malloc header); freed blocks go on their
// size class's free list. A block freed on another thread than the one that allocated it joins that other
// thread's free list, which is safe because each list is touched only by its own thread — and because
// chunks are never returned to the system (they stay reachable from a global list, so leak checkers see
// them as in use). Chunks start small and double (4 KiB .. 2 MiB), so a thread that only creates a few
// frames keeps only a few KiB. Built with CORIO_NO_FRAME_POOL (CMake: CORIO_FRAME_POOL=OFF), every block
// comes from operator new, so that AddressSanitizer sees a use after free of a frame or task state.
#pragma once

#include <cstddef>
#include <new>

namespace corio::detail {

class FrameAllocator {
 public:
  static constexpr std::size_t kGranule = 16;
  static constexpr std::size_t kMaxPooled = 1024;
  static constexpr std::size_t kClasses = kMaxPooled / kGranule + 1;

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
      b->next = heads_[c];
      heads_[c] = b;
      return;
    }
    ::operator delete(p);
  }

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  static void* refill(std::size_t cls);
  // Trivially destructible and constinit, so the hot path needs no TLS guard (without constinit, an access
  // from another translation unit still calls the TLS wrapper when one may exist).
  static constinit thread_local FreeBlock* heads_[kClasses];
  static constinit thread_local char* bump_;  // next free byte of the current chunk
  static constinit thread_local char* bump_end_;
};

// Mixin giving a class the recycling allocator.
struct PooledAlloc {
  static void* operator new(std::size_t n) { return FrameAllocator::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { FrameAllocator::deallocate(p, n); }
};

}  // namespace corio::detail
