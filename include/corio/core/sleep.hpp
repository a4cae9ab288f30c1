// sleep(): suspend the current task for a while (asyncio.sleep).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/task.hpp"

namespace corio {
namespace detail {

// Suspends until the loop's clock reaches the due time. Resumed by the loop on the turn the timer expires.
// A delay <= 0 yields exactly one turn. Cancellation removes the timer at once and resumes the task with
// CancelledError on the next turn.
struct SleepAwaiter final : Waiter, TimerNode {
  explicit SleepAwaiter(std::int64_t delay_ns) noexcept : delay_ns_(delay_ns) {}
  ~SleepAwaiter() {
    if (scheduled()) task_->loop_->timers_.remove(*this);
  }
  bool await_ready() const noexcept { return false; }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    LoopCore& loop = LoopCore::current_loop();
    suspend_on(h);
    if (!suspended()) return;  // a pending cancellation already woke the task
    if (delay_ns_ <= 0) {
      wake();
    } else {
      std::int64_t now = loop.now_ns();
      constexpr std::int64_t kMax = INT64_MAX / 2;  // "forever", without overflow
      loop.add_timer(*this, delay_ns_ >= kMax - now ? kMax : now + delay_ns_);
    }
  }
  void await_resume() { throw_if_cancelled(); }
  void fire() override { wake(); }
  bool cancel() override {
    task_->loop_->timers_.remove(*this);
    return cancel_and_wake();
  }
  void describe(std::string& out) const override;

  std::int64_t delay_ns_;
};

Task<> sleep_ns(std::int64_t ns);

}  // namespace detail

// Suspends the current task for `delay` (any std::chrono::duration); sleep(0s) yields to the loop once.
template <class Rep, class Period>
Task<> sleep(std::chrono::duration<Rep, Period> delay) {
  return detail::sleep_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(delay).count());
}

}  // namespace corio
