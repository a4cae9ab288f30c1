// Future<T>: a result that somebody sets later (asyncio.Future, loop.create_future()).
//
// create_future<T>() makes a pending future on the running loop. Whoever has the result calls set_result()
// or set_exception() on the loop's thread, once; a second call, or one after cancel(), throws
// InvalidStateError (as asyncio). Loop-thread only, handles included: a Future (as a TaskHandle) is made,
// copied and dropped on the loop's thread, its count is not atomic. From another thread, post a callback
// (call_soon_threadsafe) that captures no handle and reaches the future through the loop thread's own data,
// e.g. a map from request id to Future. A Future is a TaskHandle<T>
// whose task has no coroutine: co_await it (any number of tasks may), add_done_callback, result(),
// exception(), cancel(), and give it to gather, wait, wait_for, shield or as_completed like any handle.
//
// Contract of `co_await future`: returns at once if the future is done; otherwise the awaiting task suspends
// and is resumed by the loop on the turn after the future is set. Cancelling a task that awaits a future
// cancels the future, as asyncio does: every task awaiting it then gets CancelledError. cancel() makes the
// future read done and cancelled at once; it ends (its awaiters are woken, its callbacks scheduled) on the
// loop's next turn. A future still pending when its loop closes ends cancelled ("event loop closed").
#pragma once

#include <coroutine>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/task_handle.hpp"

namespace corio {

template <class T = void>
class Future;

namespace detail {
template <class T>
class FutureState final : public TaskState<T> {
 public:
  explicit FutureState(LoopCore& loop) noexcept : TaskState<T>(loop, std::coroutine_handle<>()) {
    this->is_future_ = true;
  }
  template <class U>
  void set_value(U&& v) {
    this->store_value(std::forward<U>(v));
  }
};

// A Future is a handle to the combinators (gather, wait_for, shield): awaited as such, not wrapped in a task.
template <class T>
inline constexpr bool is_handle_v<Future<T>> = true;

}  // namespace detail

template <class T>
class Future : public TaskHandle<T> {
 public:
  // Refers to no future (as an empty TaskHandle); create_future() makes one.
  Future() noexcept = default;

  // Sets the value: the future is done, its awaiters are woken, its done callbacks scheduled. Throws
  // InvalidStateError if it is done (set, or cancelled) already.
  template <class U = T>
  requires(!std::is_void_v<T> && std::is_constructible_v<T, U&&>) void set_result(U&& v) {
    detail::TaskStateBase* s = pending_or_throw("set_result()");
    static_cast<detail::FutureState<T>*>(s)->set_value(std::forward<U>(v));
    s->resolve_future(detail::TaskStateBase::Status::finished, nullptr);
  }
  void set_result() requires std::is_void_v<T> {
    pending_or_throw("set_result()")->resolve_future(detail::TaskStateBase::Status::finished, nullptr);
  }
  // Sets the exception that awaiting the future (or result()) throws. A null pointer, or a CancelledError
  // (use cancel()), is refused with RuntimeError, as asyncio refuses them (TypeError).
  void set_exception(std::exception_ptr e) {
    if (!e) throw RuntimeError("set_exception(): a null exception_ptr");
    if (detail::exception_is<CancelledError>(e))
      throw RuntimeError("set_exception(): CancelledError cannot be set as an exception: use cancel()");
    pending_or_throw("set_exception()")->resolve_future(detail::TaskStateBase::Status::failed, std::move(e));
  }
  template <class E>
  requires(!std::is_same_v<std::remove_cvref_t<E>, std::exception_ptr>) void set_exception(E&& e) {
    set_exception(std::make_exception_ptr(std::forward<E>(e)));
  }

 private:
  template <class U>
  friend Future<U> create_future();
  explicit Future(detail::TaskStateBase* s) noexcept : TaskHandle<T>(s) {}

  detail::TaskStateBase* pending_or_throw(const char* what) const {
    detail::TaskStateBase* s = this->state();
    if (!s) throw InvalidStateError(std::string(what) + " on an empty Future");
    if (s->done() || s->future_cancel_pending())
      throw InvalidStateError(std::string(what) + ": the future is already done");
    return s;
  }
};

// A pending future of the running loop (asyncio's loop.create_future()). Throws RuntimeError outside a
// running loop, or once it is closed (one made while it closes is ended with the others).
template <class T = void>
Future<T> create_future() {
  static_assert(!std::is_reference_v<T>, "Future<T&> is not supported: use a pointer or a value");
  static_assert(detail::kFrameAligned<T>, "Future<T> with an over-aligned T (alignas > 16) is not supported");
  detail::LoopCore& loop = detail::LoopCore::current_loop();
  if (loop.closed_) detail::LoopCore::throw_closed();
  auto* s = new detail::FutureState<T>(loop);  // (its one reference is the loop's, until it is done)
  loop.adopt_future(*s);
  Future<T> f(s);
  return f;
}

}  // namespace corio
