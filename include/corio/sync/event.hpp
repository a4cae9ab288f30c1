// Event: a flag tasks can wait for (asyncio.Event).
#pragma once

#include "corio/core/task.hpp"
#include "corio/sync/detail/wait_list.hpp"

namespace corio {

class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Sets the flag and wakes every waiter (each resumed by the loop on the next turn).
  void set() noexcept;
  void clear() noexcept { set_ = false; }
  bool is_set() const noexcept { return set_; }
  // Returns at once if set; otherwise suspends until set(). Cancelled: CancelledError.
  Task<> wait();

 private:
  bool set_ = false;
  detail::WaitList waiters_;
};

}  // namespace corio
