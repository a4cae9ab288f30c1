// Lock: a FIFO, non-reentrant mutual-exclusion lock for tasks (asyncio.Lock).
#pragma once

#include <utility>

#include "corio/core/task.hpp"
#include "corio/sync/detail/wait_list.hpp"

namespace corio {

class Lock;

// Releases its Lock when destroyed (unless moved from). Never throws there: if the lock cannot be released
// (released by hand inside the guard), that is logged instead.
class [[nodiscard]] LockGuard {
 public:
  explicit LockGuard(Lock& lock) noexcept : lock_(&lock) {}
  LockGuard(LockGuard&& o) noexcept : lock_(std::exchange(o.lock_, nullptr)) {}
  LockGuard& operator=(LockGuard&& o) noexcept;
  ~LockGuard();
  // Releases now instead of at destruction.
  void release();

 private:
  Lock* lock_;
};

namespace detail {
class LockAcquire;
}

class Lock {
 public:
  Lock() = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  // Takes the lock. Returns at once when it is free and nobody waits; otherwise suspends until release()
  // hands the lock to this task (strict FIFO: the lock goes to the longest waiter, never to a newcomer),
  // resumed by the loop on the next turn. Cancelled while waiting: CancelledError and no lock; cancelled
  // after the lock was handed over but before running: the lock passes on to the next waiter.
  detail::LockAcquire acquire() noexcept;
  // Releases the lock (hands it to the first waiter if any). Throws RuntimeError if it is not locked, or
  // is on its way to a waiter released to (as asyncio, where the lock reads unlocked until that waiter runs).
  void release();
  // False while the lock is on its way from release() to the waiter it was handed to, as asyncio's (whose
  // release() unlocks before that waiter runs), so Condition::notify() then throws.
  bool locked() const noexcept { return locked_ && !handing_; }
  // acquire(), then a guard that releases on destruction.
  Task<LockGuard> scoped();

 private:
  friend class detail::LockAcquire;
  friend class Condition;  // (watches the lock's lifetime through waiters_)
  // Hands the lock to the first waiter, if any, else unlocks it. Tracked: a waiter handed the lock learns,
  // when it runs, whether the lock was destroyed meanwhile (then it must not touch it).
  void hand_on() noexcept {
    handing_ = waiters_.wake_one_tracked(0);
    if (!handing_) locked_ = false;
  }
  // Invariant: locked_ stays true while the lock is handed from release() to a woken waiter (so no newcomer
  // takes it first); handing_ is true meanwhile, so that the lock cannot be released twice.
  bool locked_ = false;
  bool handing_ = false;
  detail::WaitList waiters_;
};

namespace detail {
// What acquire() returns: an awaitable rather than a Task<> (DESIGN.md's signature), so an uncontended
// acquire costs no coroutine frame. Contract as Lock::acquire.
class [[nodiscard]] LockAcquire : public WaitList::Node {
 public:
  explicit LockAcquire(Lock& lock) noexcept : Node(lock.waiters_, "lock"), lock_(&lock) {}
  LockAcquire(LockAcquire&& o) noexcept : Node(std::move(o)), lock_(o.lock_) {}
  bool await_ready() noexcept {
    if (lock_->locked_ || !lock_->waiters_.empty()) return false;
    lock_->locked_ = true;
    return true;
  }
  // Handed the lock but destroyed before it ran (its task destroyed with a closing loop): hand it on,
  // unless the lock is gone too.
  ~LockAcquire() {
    if (granted && !orphaned()) {
      lock_->handing_ = false;
      lock_->hand_on();
    }
  }
  void await_resume() {
    ListNode::unlink();  // (from the waiters handed the lock, if it was)
    if (std::exchange(granted, false) && !orphaned()) {
      lock_->handing_ = false;
      if (task_->cancel_pending()) lock_->hand_on();  // handed over, then cancelled: hand it on
    }
    throw_if_cancelled();
  }

 private:
  Lock* lock_;
};
}  // namespace detail

inline detail::LockAcquire Lock::acquire() noexcept { return detail::LockAcquire(*this); }

}  // namespace corio
