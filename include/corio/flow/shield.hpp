// shield: protect a task from the cancellation of whoever awaits it (asyncio.shield).
//
// `co_await shield(handle)` waits for the task and returns its result. If the awaiting task is cancelled,
// the await throws CancelledError at once while the shielded task keeps running (it is not cancelled).
// A Task<T> (or any other awaitable) is scheduled as a task first; its result is then moved out, so a
// move-only result works (from a TaskHandle it is copied, or moved if it cannot be copied). Resumed by the
// loop on the turn after the task ended.
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

namespace corio {
namespace detail {

template <class T>
class ShieldAwaiter final : public Waiter, public DoneWatcher {
 public:
  // owned: shield() made the task itself, so nobody else can ask for its result.
  explicit ShieldAwaiter(TaskHandle<T> h, bool owned = false) : h_(std::move(h)), owned_(owned) {
    if (!h_) throw InvalidStateError("shield(): empty TaskHandle");
  }
  ShieldAwaiter(ShieldAwaiter&& o) noexcept : h_(std::move(o.h_)), owned_(o.owned_) {}

  bool await_ready() const { return h_.state()->done(); }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    h_.state()->check_same_loop();
    h_.state()->add_watcher(*this);
    suspend_on(h);
  }
  T await_resume() {
    // The inner task ended before this await resumed: its outcome counts as looked at even if this await
    // throws CancelledError, as asyncio's shield marks it retrieved then (no "never retrieved" report).
    if (h_.state()->done()) h_.state()->exc_retrieved_ = true;
    throw_if_cancelled();
    // The value is moved out when nobody else can want it (the task is shield's own) or when it cannot be
    // copied (a move-only result of a handle: as co_await std::move(handle)).
    if constexpr (!std::is_void_v<T>) {
      if (owned_ || !std::is_copy_constructible_v<T>) {
        auto* s = state_cast<T>(h_.state());
        s->exc_retrieved_ = true;
        return s->take();
      }
    }
    if constexpr (std::is_copy_constructible_v<T> || std::is_void_v<T>) return h_.result();
  }
  void on_done(TaskStateBase&) override { wake(); }
  bool cancel() override {
    DoneWatcher::unlink();
    return cancel_and_wake();
  }
  void describe(std::string& out) const override { out += "shield of task '" + h_.get_name() + "'"; }

 private:
  TaskHandle<T> h_;
  bool owned_;
};

}  // namespace detail

template <class T>
detail::ShieldAwaiter<T> shield(TaskHandle<T> task) {
  return detail::ShieldAwaiter<T>(std::move(task));
}
template <class T>
detail::ShieldAwaiter<T> shield(Task<T> task) {
  return detail::ShieldAwaiter<T>(create_task(std::move(task), {}, detail::SourceLoc{}), /*owned=*/true);
}

// Any other awaitable runs as a task first, then is shielded.
template <class A>
requires(detail::Awaitable<A> && !detail::is_task_v<std::decay_t<A>> &&
         !detail::is_handle_v<std::decay_t<A>>) auto shield(A awaitable) {
  return shield(detail::await_as_task(std::move(awaitable)));
}

}  // namespace corio
