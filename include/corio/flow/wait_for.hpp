// wait_for: await with a deadline (asyncio.wait_for).
//
// Runs the awaitable (a Task<T> or any other awaitable, scheduled as a child task, or a TaskHandle<T>)
// and returns its result. When the timeout passes first, the inner work is cancelled and wait_for waits until
// it has ended, then throws TimeoutError — never leaving it running behind. If the inner work swallows that
// cancellation and returns a value, that value is returned; if it ends with another exception, that exception
// propagates. A cancellation of the awaiting task goes to the inner work, and wait_for waits for it: if it
// ends cancelled, CancelledError (which wins over a timeout arriving at the same time); if it swallows the
// cancellation, its value or its exception, as in asyncio >= 3.12 (the awaiting task's cancelling() stays
// raised). A cancellation that arrives after the
// inner work finished with a value, before the awaiting task resumed, does not lose that value (it may be a
// lock acquired): wait_for returns it and the task's next await raises CancelledError; after it failed, or
// was cancelled, wait_for raises CancelledError (as a plain co_await, and asyncio >= 3.12). A timeout <= 0
// cancels work that is not done yet at once. The timeout follows the loop's turn order: inner work woken
// before the turn in which the deadline is seen to have passed runs first, and its value is returned (as
// asyncio's wait_for of a coroutine, run in the awaiting task, returns it).
//
// The awaiting task is resumed by the loop on the turn after the inner work ended.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/detail/children.hpp"

namespace corio {
namespace detail {

class WaitForWaiter final : public Waiter, public TimerNode, public DoneWatcher {
 public:
  WaitForWaiter(TaskStateBase& child, std::int64_t timeout_ns) : child_(&child), timeout_ns_(timeout_ns) {}
  ~WaitForWaiter() {
    if (scheduled()) loop_->timers_.remove(*this);
    expire_.cancel();
  }

  bool await_ready() const noexcept { return child_->done(); }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    loop_ = &LoopCore::current_loop();
    child_->add_watcher(*this);
    suspend_on(h);
    if (outer_cancelled_) return;
    if (timeout_ns_ <= 0) {
      expire();
    } else {
      std::int64_t now = loop_->now_ns();
      constexpr std::int64_t kMax = INT64_MAX / 2;
      loop_->add_timer(*this, timeout_ns_ >= kMax - now ? kMax : now + timeout_ns_);
    }
  }
  // After it returns, the child is done: the caller takes its result. Throws CancelledError or TimeoutError.
  void await_resume() {
    // Woken before the inner work ended: only a cancellation that could not go to it does that (two tasks
    // cancelling each other in a cycle: TaskStateBase::cancel wakes the task with CancelledError).
    if (!child_->done()) throw_if_cancelled();
    // The child's outcome is looked at on every path (asyncio's wakeup takes the result first): a failure
    // it ended with is never reported as "never retrieved" because this await threw something else.
    child_->exc_retrieved_ = true;
    // The inner work finished with a value, then the awaiting task was cancelled before it resumed: the
    // value is returned, since it may be a resource nobody else can give back (a lock acquired, a
    // connection opened), and the cancellation stays pending, to be raised at the task's next await.
    if (task_ && task_->must_cancel_ && !outer_cancelled_ &&
        child_->status_ == TaskStateBase::Status::finished)
      return;
    if (outer_cancelled_) {
      // The awaiting task's cancellation went to the inner work, as asyncio's does: CancelledError if it
      // ended cancelled; if it swallowed it, its value or its exception (the caller takes them), and the
      // awaiting task carries on (its cancelling() stays raised).
      if (child_->status_ == TaskStateBase::Status::cancelled) throw CancelledError(task_->cancel_message());
      return;
    }
    throw_if_cancelled();
    if (timed_out_ && child_->status_ == TaskStateBase::Status::cancelled) {
      child_->exc_retrieved_ = true;
      throw TimeoutError("wait_for: timed out and the inner work was cancelled");
    }
  }

  // The deadline passed. A timer only enqueues work: the turn runs what was ready before it first (asyncio's
  // order), so inner work woken in time, whose step is queued, finishes and keeps its value (asyncio's
  // wait_for of a coroutine returns it); the timeout then finds it done. (Cancelling here, before the turn
  // ran, turned a result that had arrived in time into TimeoutError.)
  void fire() override {
    expire_ = EventLoop::from_core(*loop_).call_soon([this] { expire(); });
  }
  void expire() {
    if (child_->done() || outer_cancelled_) return;
    timed_out_ = true;
    child_->cancel({});
  }
  bool cancel() override {
    // The inner work is done (its watchers are being told; this one's turn has not come): it cannot take
    // the cancellation, which stays pending on the awaiting task, as a plain co_await leaves it (asyncio
    // >= 3.12: a TaskGroup sibling waiting on a child that failed gets CancelledError, not its error).
    if (child_->done()) return false;
    // The request came round a cycle through the inner work, whose own cancellation led here (it awaits
    // this task): cancelling it again would wake it instead, and leave this task waiting for a task that
    // waits for this one. This wait ends with CancelledError instead, as asyncio's, whose cancelled waiter
    // is this wait's own.
    if (child_->cancel_in_progress()) return cancel_and_wake();
    outer_cancelled_ = true;
    if (scheduled()) loop_->timers_.remove(*this);
    child_->cancel(task_->cancel_message());
    return true;
  }
  void on_done(TaskStateBase&) override {
    if (scheduled()) loop_->timers_.remove(*this);
    wake();
  }
  void describe(std::string& out) const override {
    out += "wait_for task '" + child_->name() + "'";
    if (scheduled()) {
      char buf[48];
      std::snprintf(buf, sizeof buf, " until %.3f", static_cast<double>(when_ns_) / 1e9);
      out += buf;
    } else if (timed_out_) {
      out += " (timed out, cancelling)";
    }
  }

 private:
  TaskStateBase* child_;
  LoopCore* loop_ = nullptr;
  std::int64_t timeout_ns_;
  bool timed_out_ = false;
  bool outer_cancelled_ = false;
  // expire(), queued by fire() for this turn; it does nothing once the inner work is done or the wait was
  // cancelled from outside, so only the destructor needs to cancel it.
  Handle expire_;
};

// owned: h was created from a Task by wait_for (its value is moved out); a caller's handle keeps its value.
template <class T>
Task<T> wait_for_handle(TaskHandle<T> h, std::int64_t timeout_ns, bool owned) {
  WaitForWaiter waiter(*h.state(), timeout_ns);
  co_await waiter;
  if constexpr (std::is_void_v<T>)
    child_result(h, owned);
  else
    co_return child_result(h, owned);
}

// The timeout in nanoseconds, saturating as sleep()'s delays do: wait_for(x, 1e10 s) waits for x (a plain
// duration_cast overflowed, and the timeout came out negative: TimeoutError at once).
template <class Rep, class Period>
std::int64_t timeout_ns(std::chrono::duration<Rep, Period> timeout) noexcept {
  using D = std::chrono::duration<long double, std::nano>;
  return EventLoop::saturate_ns(std::chrono::duration_cast<D>(timeout).count());
}

}  // namespace detail

// Awaits `task` for at most `timeout`; see above.
template <class T, class Rep, class Period>
Task<T> wait_for(Task<T> task, std::chrono::duration<Rep, Period> timeout) {
  co_return co_await detail::wait_for_handle(create_task(std::move(task), {}, detail::SourceLoc{}),
                                             detail::timeout_ns(timeout), /*owned=*/true);
}
template <class T, class Rep, class Period>
Task<T> wait_for(TaskHandle<T> handle, std::chrono::duration<Rep, Period> timeout) {
  co_return co_await detail::wait_for_handle(detail::to_handle(handle), detail::timeout_ns(timeout),
                                             /*owned=*/false);
}

// Any other awaitable (sleep(), shield(...)) runs as a task that awaits it, with the same semantics.
template <class A, class Rep, class Period>
requires(detail::Awaitable<A> && !detail::is_task_v<std::decay_t<A>> && !detail::is_handle_v<std::decay_t<A>>)
    Task<std::decay_t<detail::await_result_t<A>>> wait_for(A awaitable,
                                                           std::chrono::duration<Rep, Period> timeout) {
  co_return co_await wait_for(detail::await_as_task(std::move(awaitable)), timeout);
}

}  // namespace corio
