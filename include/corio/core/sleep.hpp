// sleep(): suspend the current task for a while (asyncio.sleep).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/task.hpp"

namespace corio {

namespace detail {
Task<> sleep_ns(std::int64_t ns);
}

// The awaitable sleep() returns. Contract: `co_await` suspends the task until the loop's clock reaches
// the due time; the loop resumes it on the turn the timer expires. A delay <= 0 yields exactly one turn.
// Cancellation removes the timer at once (O(log n)) and the task resumes with CancelledError next turn.
// Awaited once: a second co_await throws InvalidStateError.
//
// sleep() returns this awaitable rather than a Task<> (DESIGN.md's first signature) so that a sleep costs
// no coroutine frame: 100,000 sleeping tasks then hold one frame each, not two. Code that needs a Task<>
// still gets one: Sleep converts to Task<> implicitly, and create_task, gather, wait_for and shield take
// any awaitable.
class [[nodiscard]] Sleep final : private detail::Waiter, private detail::TimerNode {
 public:
  explicit Sleep(std::int64_t delay_ns) noexcept { when_ns_ = delay_ns; }
  // Movable until awaited (it holds only its delay then).
  Sleep(Sleep&& o) noexcept { when_ns_ = o.when_ns_; }
  Sleep& operator=(Sleep&&) = delete;
  ~Sleep() {
    if (scheduled()) task_->loop_->timers_.remove(*this);
  }

  // A Task<> that sleeps for the same delay.
  operator Task<>() && { return detail::sleep_ns(when_ns_); }

  bool await_ready() const noexcept { return false; }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    // Awaited before: when_ns_ is a due time now, not a delay (asyncio: a coroutine awaited twice raises).
    if (task_) throw InvalidStateError("co_await on a sleep() that was already awaited");
    const std::int64_t delay = when_ns_;  // until scheduled, when_ns_ holds the delay
    suspend_on(h);
    if (!suspended()) return;  // a pending cancellation already woke the task
    if (delay <= 0) {
      wake();
      return;
    }
    detail::LoopCore& loop = *task_->loop_;
    std::int64_t now = loop.now_ns();
    constexpr std::int64_t kMax = INT64_MAX / 2;  // "forever", without overflow
    loop.add_timer(*this, delay >= kMax - now ? kMax : now + delay);
  }
  void await_resume() { throw_if_cancelled(); }

 private:
  void fire() override { wake(); }
  bool cancel() override {
    task_->loop_->timers_.remove(*this);
    return cancel_and_wake();
  }
  void describe(std::string& out) const override;
};

// Suspends the current task for `delay` (any std::chrono::duration); sleep(0s) yields to the loop once.
// Durations beyond the nanosecond range saturate to "forever" (NaN too); negative ones are sleep(0s).
template <class Rep, class Period>
Sleep sleep(std::chrono::duration<Rep, Period> delay) {
  using D = std::chrono::duration<long double, std::nano>;
  long double ns = std::chrono::duration_cast<D>(delay).count();
  if (!(ns < static_cast<long double>(INT64_MAX))) return Sleep(INT64_MAX);  // (NaN too: never)
  if (ns <= 0) return Sleep(0);  // (-1e300 s was cast out of range: undefined behaviour)
  return Sleep(static_cast<std::int64_t>(ns));
}

}  // namespace corio
