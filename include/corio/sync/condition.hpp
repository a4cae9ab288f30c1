// Condition: wait for a notification while holding a Lock (asyncio.Condition).
#pragma once

#include <cstddef>
#include <type_traits>

#include "corio/core/task.hpp"
#include "corio/sync/detail/wait_list.hpp"
#include "corio/sync/lock.hpp"

namespace corio {

class Condition {
 public:
  explicit Condition(Lock& lock) noexcept : lock_(&lock) {}
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  // Must be called with the lock held (RuntimeError otherwise). Releases the lock, suspends until
  // notified, then re-acquires the lock before returning — also when cancelled: CancelledError is thrown
  // only once the lock is held again. A waiter notified but cancelled before it runs passes the
  // notification on to the next waiter. The condition may be destroyed once this wait was notified: the
  // wait then re-acquires the lock, which must outlive it, and returns (as asyncio's, where the woken wait
  // keeps the condition alive), or, if its task is cancelled, throws CancelledError without touching the
  // lock (its owner's frame is taken to be gone: a task that failed, whose tasks run() then cancels).
  Task<> wait();
  // wait() until pred() is true; returns pred()'s last value.
  template <class Pred>
  Task<bool> wait_for(Pred pred) {
    while (!pred()) co_await wait();
    co_return true;
  }
  // Wakes up to n waiters (FIFO). Must be called with the lock held (RuntimeError otherwise).
  void notify(std::size_t n = 1);
  void notify_all();
  Lock& lock() noexcept { return *lock_; }

 private:
  Lock* lock_;
  detail::WaitList waiters_;
};

}  // namespace corio
