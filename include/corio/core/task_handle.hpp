// TaskHandle<T> and create_task: running a Task concurrently (asyncio.Task / asyncio.create_task).
//
// create_task(task) schedules the task's first step for the loop's next turn and returns a handle. The loop
// keeps the task alive until it finishes whether or not anybody holds a handle (unlike asyncio, a
// fire-and-forget task is never collected mid-flight). Handles are copyable shared references; a
// default-constructed handle refers to no task. Everything here is called on the loop's thread.
//
// Contract of `co_await handle`: returns at once if the task is done; otherwise the awaiting task suspends
// and is resumed by the loop on the turn after the task finishes. Cancelling the awaiting task cancels the
// awaited one (as awaiting an asyncio.Task does); the awaiter then gets the task's outcome.
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/core/detail/awaitable.hpp"
#include "corio/core/detail/runtime.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/task.hpp"

namespace corio {

template <class T = void>
class TaskHandle;

namespace detail {

// The result side of a task's state. Every TaskState<T> derives from TaskState<void>, so a TaskHandle<void>
// viewing any task (and code generic over T, with T = void) can downcast to TaskState<void> legitimately.
template <>
class TaskState<void> : public TaskStateBase {
 public:
  TaskState(LoopCore& loop, std::coroutine_handle<> frame) noexcept : TaskStateBase(loop, frame) {}
  // Throws the task's exception, CancelledError, or InvalidStateError if it did not finish with a value.
  void get() { check_result(); }
  void take() { check_result(); }

 protected:
  void take_value(PromiseBase&) override {}
};

template <class T>
class TaskState : public TaskState<void> {
 public:
  TaskState(LoopCore& loop, std::coroutine_handle<> frame) noexcept : TaskState<void>(loop, frame) {}
  TaskState(const TaskState&) = delete;
  TaskState& operator=(const TaskState&) = delete;
  ~TaskState() override {
    if (status_ == Status::finished) value_.~T();
  }
  // The value of a task that finished (throws its exception, CancelledError, or InvalidStateError).
  T get() {
    check_result();
    return value_;
  }
  T take() {
    check_result();
    return std::move(value_);
  }

 protected:
  void take_value(PromiseBase& root) override {
    std::construct_at(std::addressof(value_), std::move(static_cast<Promise<T>&>(root).value_));
  }
  // A future's set_result(): the value, before resolve_future(finished).
  template <class U>
  void store_value(U&& v) {
    std::construct_at(std::addressof(value_), std::forward<U>(v));
  }

 private:
  // A bare union rather than std::optional: status_ == finished says whether it holds a value, and a small
  // T lands in TaskStateBase's tail padding.
  union {
    T value_;
  };
};

// The state of a task scheduled with create_task: takes over its root coroutine.
template <class T>
class ScheduledTask final : public TaskState<T> {
 public:
  ScheduledTask(LoopCore& loop, Task<T>&& task) noexcept : TaskState<T>(loop, task.h_) {
    task.h_.promise().set_root(this);
    task.h_.promise().started_ = true;
    task.h_ = nullptr;
  }

  static bool already_awaited(const Task<T>& t) noexcept { return t.h_.promise().started_; }
};

// The result side of any task's state (TaskState<void> for a type-erased view).
template <class T>
TaskState<T>* state_cast(TaskStateBase* s) noexcept {
  return static_cast<TaskState<T>*>(s);
}

// `co_await handle`: waits for another scheduled task.
template <class T, bool Move>
struct HandleAwaiter final : Waiter, DoneWatcher {
  explicit HandleAwaiter(TaskStateBase* s) : s_(s) {}
  TaskStateBase* s_;

  bool await_ready() const {
    if (!s_) throw InvalidStateError("co_await on an empty TaskHandle");
    return s_->done();
  }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    if (LoopCore::running_ && LoopCore::running_->current_ == s_)
      throw RuntimeError("a task cannot await itself");
    s_->check_same_loop();
    s_->add_watcher(*this);
    suspend_on(h);
  }
  T await_resume() {
    // Retrieved even when this await throws CancelledError (cancelled after the task ended): as asyncio's
    // wakeup, which takes the result first, so a failure awaited so is not "never retrieved".
    if (s_->done()) s_->exc_retrieved_ = true;
    throw_if_cancelled();
    auto* st = state_cast<T>(s_);
    st->exc_retrieved_ = true;
    if constexpr (Move)
      return st->take();
    else
      return st->get();
  }
  void on_done(TaskStateBase&) override { wake(); }
  bool cancel() override {
    // A task already done (its watchers are running) cannot take the cancellation: leave it pending
    // on the awaiter, as asyncio leaves _must_cancel set when the future it waits on is done.
    return s_->cancel(task_->cancel_message());
  }
  TaskStateBase* cancel_target() const noexcept override { return s_; }
  // Stops watching the awaited task, which goes on (it is not cancelled: it may have other awaiters).
  void orphan() noexcept override {
    handle_ = nullptr;
    DoneWatcher::unlink();
    detach();
  }
  void describe(std::string& out) const override {
    if (s_->is_future_)
      out += "future";
    else
      out += "task '" + s_->name() + "'";
  }
};

}  // namespace detail

template <class T>
class TaskHandle {
 public:
  using value_type = T;

  TaskHandle() noexcept = default;
  TaskHandle(const TaskHandle& o) noexcept : s_(o.s_) {
    if (s_) s_->add_ref();
  }
  TaskHandle(TaskHandle&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  // Any handle converts to TaskHandle<void>, a type-erased view of the same task.
  template <class U>
  requires(std::is_void_v<T> && !std::is_void_v<U>) TaskHandle(const TaskHandle<U>& o)
  noexcept : TaskHandle(o.state()) {}
  TaskHandle& operator=(TaskHandle o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~TaskHandle() {
    if (s_) s_->release();
  }

  // Asks the task to stop: the co_await it is suspended at (or its next one) throws CancelledError(msg).
  // Returns false if the task is already done.
  bool cancel(std::string msg = {}) { return state_or_throw()->cancel(std::move(msg)); }
  bool done() const {
    const detail::TaskStateBase* s = state_or_throw();
    return s->done() || s->future_cancel_pending();
  }
  // True once CancelledError escaped the task's coroutine (not merely when cancel() was called); for a
  // Future, once cancel() was called.
  bool cancelled() const {
    const detail::TaskStateBase* s = state_or_throw();
    return s->status_ == detail::TaskStateBase::Status::cancelled || s->future_cancel_pending();
  }
  // The task's value; throws its exception, CancelledError if it was cancelled, InvalidStateError if it is
  // not done yet.
  T result() const {
    auto* s = detail::state_cast<T>(state_or_throw());
    if (s->done()) s->exc_retrieved_ = true;  // (asking too early retrieves nothing: a later failure is news)
    return s->get();
  }
  // The exception the task ended with (null if it returned a value); CancelledError if it was cancelled,
  // InvalidStateError if it is not done.
  std::exception_ptr exception() const {
    detail::TaskStateBase* s = state_or_throw();
    if (s->future_cancel_pending()) s->check_result();  // (CancelledError)
    if (!s->done()) throw InvalidStateError("exception(): the task is not done");
    if (s->status_ == detail::TaskStateBase::Status::cancelled) s->check_result();
    s->exc_retrieved_ = true;
    return s->exception();
  }
  // f(TaskHandle<T>) runs on the loop (scheduled with call_soon, never inline) once the task is done.
  template <class F>
  void add_done_callback(F f) {
    detail::TaskStateBase* s = state_or_throw();
    // The callable's own type, not a std::function: a move-only one (holding a std::promise) is fine.
    auto fn = [f = std::move(f), self = TaskHandle(*this)]() mutable { f(self); };
    s->add_callback(std::make_unique<detail::FnCallback<decltype(fn)>>(std::move(fn)));
  }
  int cancelling() const { return state_or_throw()->cancelling(); }
  int uncancel() { return state_or_throw()->uncancel(); }
  std::string get_name() const { return state_or_throw()->name(); }
  void set_name(std::string name) { state_or_throw()->set_name(std::move(name)); }
  // What the task waits on now: "sleep until 12.503", "task 'Task-7'", "gather of 3 (1 done)", ...;
  // "running", "ready" (woken, its next step queued), "not started" (its first step not run yet), or "done"
  // when it waits on nothing.
  std::string awaiting() const { return state_or_throw()->awaiting(); }

  auto operator co_await() const& { return detail::HandleAwaiter<T, false>(s_); }
  auto operator co_await() && { return detail::HandleAwaiter<T, true>(s_); }

  explicit operator bool() const noexcept { return s_ != nullptr; }
  friend bool operator==(const TaskHandle& a, const TaskHandle& b) noexcept { return a.s_ == b.s_; }

  // Internal: the shared state (null for an empty handle).
  detail::TaskStateBase* state() const noexcept { return s_; }
  explicit TaskHandle(detail::TaskStateBase* s) noexcept : s_(s) {
    if (s_) s_->add_ref();
  }

 private:
  detail::TaskStateBase* state_or_throw() const {
    if (!s_) throw InvalidStateError("empty TaskHandle");
    return s_;
  }
  detail::TaskStateBase* s_ = nullptr;
};

// Schedules `task` to run concurrently; its first step runs on the loop's next turn. Default name:
// "Task-<n>". Throws RuntimeError outside a running loop, InvalidStateError for a moved-from or already
// awaited Task.
// `where` defaults to the caller's source location. In debug mode the task keeps it and dump_tasks(), the
// slow-step, "never retrieved" and pending-at-close reports name it ("created at file:line"), as asyncio's
// debug mode keeps a task's source traceback; outside debug mode it is not stored.
template <class T>
TaskHandle<T> create_task(Task<T> task, std::string name = {},
                          detail::SourceLoc where = detail::SourceLoc::current()) {
  if (!task.valid()) throw InvalidStateError("create_task() on a Task that was moved from");
  if (detail::ScheduledTask<T>::already_awaited(task))
    throw InvalidStateError("create_task() on a Task that was already awaited");
  detail::LoopCore& loop = detail::LoopCore::current_loop();
  auto* s = new detail::ScheduledTask<T>(loop, std::move(task));
  if (!name.empty()) s->set_name(std::move(name));
  if (loop.debug_ && where.known()) s->set_created(where);
  loop.adopt(*s);
  TaskHandle<T> h(s);
  return h;
}

// Schedules any other awaitable (sleep(), shield(...), a user's awaiter) as a task that awaits it.
template <class A>
requires(detail::Awaitable<A> && !detail::is_task_v<std::decay_t<A>>)
    TaskHandle<std::decay_t<detail::await_result_t<A>>> create_task(
        A awaitable, std::string name = {}, detail::SourceLoc where = detail::SourceLoc::current()) {
  return create_task(detail::await_as_task(std::move(awaitable)), std::move(name), where);
}

namespace detail {
template <class T>
inline constexpr bool is_handle_v = false;
template <class T>
inline constexpr bool is_handle_v<TaskHandle<T>> = true;
}  // namespace detail

// The task whose step is running (an empty handle outside any task); throws RuntimeError with no loop.
TaskHandle<void> current_task();
// Every task of the running loop that is not done yet.
std::vector<TaskHandle<void>> all_tasks();
// Every live task: name, state, and its chain of awaits (innermost first), one block per task.
std::string dump_tasks();

}  // namespace corio
