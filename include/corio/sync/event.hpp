// Event: a flag tasks can wait for (asyncio.Event).
#pragma once

#include "corio/core/task.hpp"
#include "corio/sync/detail/wait_list.hpp"

namespace corio {

namespace detail {
class EventWait;
}

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
  detail::EventWait wait() noexcept;

 private:
  friend class detail::EventWait;
  bool set_ = false;
  detail::WaitList waiters_;
};

namespace detail {
// What wait() returns: an awaitable rather than a Task<> (DESIGN.md's signature); no frame when set.
class [[nodiscard]] EventWait : public WaitList::Node {
 public:
  explicit EventWait(Event& ev) noexcept : Node(ev.waiters_, "event"), ev_(&ev) {}
  EventWait(EventWait&& o) noexcept : Node(std::move(o)), ev_(o.ev_) {}
  bool await_ready() const noexcept { return ev_->set_; }

 private:
  Event* ev_;
};
}  // namespace detail

inline detail::EventWait Event::wait() noexcept { return detail::EventWait(*this); }

}  // namespace corio
