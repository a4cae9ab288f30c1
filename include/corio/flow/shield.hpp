// shield: protect a task from the cancellation of whoever awaits it (asyncio.shield).
//
// `co_await shield(handle)` waits for the task and returns its result. If the awaiting task is cancelled,
// the await throws CancelledError at once while the shielded task keeps running (it is not cancelled).
// A Task<T> (or any other awaitable) is scheduled as a task first. Resumed by the loop on the turn after the
// task ended.
#pragma once

#include <string>
#include <utility>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

namespace corio {
namespace detail {

template <class T>
class ShieldAwaiter final : public Waiter, public DoneWatcher {
 public:
  explicit ShieldAwaiter(TaskHandle<T> h) : h_(std::move(h)) {
    if (!h_) throw InvalidStateError("shield(): empty TaskHandle");
  }
  ShieldAwaiter(ShieldAwaiter&& o) noexcept : h_(std::move(o.h_)) {}

  bool await_ready() const { return h_.state()->done(); }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    h_.state()->add_watcher(*this);
    suspend_on(h);
  }
  T await_resume() {
    throw_if_cancelled();
    return h_.result();
  }
  void on_done(TaskStateBase&) override { wake(); }
  bool cancel() override {
    DoneWatcher::unlink();
    return cancel_and_wake();
  }
  void describe(std::string& out) const override { out += "shield of task '" + h_.get_name() + "'"; }

 private:
  TaskHandle<T> h_;
};

}  // namespace detail

template <class T>
detail::ShieldAwaiter<T> shield(TaskHandle<T> task) {
  return detail::ShieldAwaiter<T>(std::move(task));
}
template <class T>
detail::ShieldAwaiter<T> shield(Task<T> task) {
  return detail::ShieldAwaiter<T>(create_task(std::move(task), {}, detail::SourceLoc{}));
}

// Any other awaitable runs as a task first, then is shielded.
template <class A>
requires(detail::Awaitable<A> && !detail::is_task_v<std::decay_t<A>> &&
         !detail::is_handle_v<std::decay_t<A>>) auto shield(A awaitable) {
  return shield(create_task(detail::await_as_task(std::move(awaitable)), {}, detail::SourceLoc{}));
}

}  // namespace corio
