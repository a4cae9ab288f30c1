// Barrier: wait until n tasks have arrived (asyncio.Barrier).
#pragma once

#include <cstddef>
#include <cstdint>

#include "corio/core/task.hpp"
#include "corio/sync/detail/wait_list.hpp"

namespace corio {

class Barrier {
 public:
  explicit Barrier(std::size_t parties);
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  // Arrives and suspends until `parties` tasks have arrived; returns this task's arrival index (0 for the
  // first). The last to arrive releases all and does not suspend. Throws BrokenBarrierError if the barrier
  // is broken (abort) or reset while waiting, or after its release but before this task ran again (as
  // asyncio). A cancelled waiter leaves (its arrival is undone) when its task runs; until then it still
  // counts, and if the barrier fills meanwhile it keeps its index, as in asyncio (the other indices do not
  // close up over it). A waiter that left frees its index: the arrivals after it move down, so each cycle
  // returns 0..parties-1, each once (asyncio's would repeat one).
  Task<std::size_t> wait();
  // Wakes every waiter with BrokenBarrierError and makes the barrier empty and usable again.
  Task<> reset();
  // Breaks the barrier: every waiter and every later wait() throws BrokenBarrierError (until reset()).
  Task<> abort();

  std::size_t parties() const noexcept { return parties_; }
  // The arrivals of the cycle filling now, as asyncio's: a waiter cancelled counts until its task runs.
  std::size_t n_waiting() const noexcept { return count_; }
  bool broken() const noexcept { return broken_; }

 private:
  std::size_t parties_;
  std::size_t count_ = 0;       // arrivals in this cycle
  std::uint64_t cycle_ = 0;     // bumped whenever count_ starts again (filled, reset, aborted)
  std::uint64_t arrivals_ = 0;  // arrivals that waited, ever: orders the waiters (see wait())
  bool broken_ = false;
  detail::WaitList waiters_;
};

}  // namespace corio
