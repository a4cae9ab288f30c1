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

  // Must be called with the lock held: RuntimeError if it is not locked (as asyncio, which task holds it is
  // not checked; a wait() from a task not holding it releases the holder's lock). Releases the lock, suspends
  // until notified, then re-acquires the lock before returning — also when cancelled: CancelledError is
  // thrown only once the lock is held again. A waiter notified but cancelled before it runs passes the
  // notification on to the next waiter. The condition may be destroyed while this wait is pending: the wait
  // still re-acquires the lock and returns if it was notified (as asyncio's, where the pending wait keeps the
  // condition alive), or re-acquires it and throws CancelledError if cancelled. If the lock is destroyed
  // too (the two went with their owner's frame: a task that failed, whose tasks run() then cancels), the
  // wait touches neither: CancelledError if cancelled, else RuntimeError.
  Task<> wait();
  // wait() until pred() is true; returns true (pred()'s last value, as asyncio's).
  template <class Pred>
  Task<bool> wait_for(Pred pred) {
    while (!pred()) co_await wait();
    co_return true;
  }
  // Wakes up to n waiters (FIFO). Must be called with the lock held: RuntimeError if it is not locked (as
  // asyncio, which task holds it is not checked).
  void notify(std::size_t n = 1);
  void notify_all();
  Lock& lock() noexcept { return *lock_; }

 private:
  Lock* lock_;
  detail::WaitList waiters_;
};

}  // namespace corio
