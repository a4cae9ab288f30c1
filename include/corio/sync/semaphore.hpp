// Semaphore and BoundedSemaphore (asyncio.Semaphore / BoundedSemaphore).
#pragma once

#include <cstddef>
#include <limits>
#include <utility>

#include "corio/core/task.hpp"
#include "corio/sync/detail/wait_list.hpp"

namespace corio {

namespace detail {
class SemaphoreAcquire;
}

class Semaphore {
 public:
  explicit Semaphore(std::size_t value = 1) noexcept : value_(value) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  // Takes a permit. Returns at once if one is free and nobody waits; otherwise suspends until release()
  // hands a permit to this task. Strictly FIFO: a new acquire never jumps ahead of waiters (CPython
  // #90155). Cancelled after the permit was handed over but before running: the permit passes on.
  detail::SemaphoreAcquire acquire() noexcept;
  // Returns a permit: to the first waiter if any, else to the pool. Throws corio::Error (and changes
  // nothing) when that would take a BoundedSemaphore above its initial value (a BoundedSemaphore(0) also
  // with a task waiting, as asyncio) — also when called through a
  // Semaphore&: the bound is stored here, not in a virtual override.
  void release();
  // True when acquire() would suspend. (A waiter handed a permit that has not run yet no longer counts: it
  // has its permit. asyncio's locked() still counts it, so there a new acquire() then waits a turn, here it
  // takes a permit released meanwhile at once; either way no task lacking a permit is overtaken.)
  bool locked() const noexcept { return value_ == 0 || !waiters_.empty(); }
  std::size_t value() const noexcept { return value_; }

 protected:
  static constexpr std::size_t kUnbounded = std::numeric_limits<std::size_t>::max();
  Semaphore(std::size_t value, std::size_t bound) noexcept : value_(value), bound_(bound) {}

 private:
  friend class detail::SemaphoreAcquire;
  // A permit handed back by a waiter that was given it and then cancelled: it was out, so the bound holds.
  // Waiters are woken tracked: one handed a permit learns, when it runs, whether the semaphore was
  // destroyed meanwhile (then it must not touch it).
  void give_back() noexcept {
    if (!waiters_.wake_one_tracked(0)) ++value_;
  }

  std::size_t value_;
  // Invariant: value_ <= bound_ (kUnbounded for a plain Semaphore; BoundedSemaphore's initial value).
  std::size_t bound_ = kUnbounded;
  detail::WaitList waiters_;
};

// A Semaphore whose release() above the initial value throws corio::Error (through a Semaphore& too).
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(std::size_t value = 1) noexcept : Semaphore(value, value) {}
};

namespace detail {
// What acquire() returns: an awaitable rather than a Task<> (DESIGN.md's signature), so an uncontended
// acquire costs no coroutine frame. Contract as Semaphore::acquire.
class [[nodiscard]] SemaphoreAcquire : public WaitList::Node {
 public:
  explicit SemaphoreAcquire(Semaphore& sem) noexcept : Node(sem.waiters_, "semaphore"), sem_(&sem) {}
  SemaphoreAcquire(SemaphoreAcquire&& o) noexcept : Node(std::move(o)), sem_(o.sem_) {}
  bool await_ready() noexcept {
    if (sem_->value_ == 0 || !sem_->waiters_.empty()) return false;
    --sem_->value_;
    return true;
  }
  // Handed a permit but destroyed before it ran (its task destroyed with a closing loop): give it back,
  // unless the semaphore is gone too.
  ~SemaphoreAcquire() {
    if (granted && !orphaned()) sem_->give_back();
  }
  void await_resume() {
    ListNode::unlink();  // (from the waiters handed a permit, if it was)
    const bool handed = std::exchange(granted, false);
    if (handed && !orphaned() && task_->cancel_pending())
      sem_->give_back();  // handed a permit, then cancelled
    throw_if_cancelled();
  }

 private:
  Semaphore* sem_;
};
}  // namespace detail

inline detail::SemaphoreAcquire Semaphore::acquire() noexcept { return detail::SemaphoreAcquire(*this); }

}  // namespace corio
