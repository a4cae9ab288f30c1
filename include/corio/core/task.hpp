// Task<T>: a lazy coroutine, the C++ form of an asyncio coroutine object.
//
// Calling a coroutine function returns a Task and runs nothing. `co_await task` runs it inside the awaiting
// task (no scheduling, no allocation beyond the frame) and yields its result or rethrows its exception.
// A Task is move-only and awaited at most once: awaiting it twice, or awaiting a moved-from Task, throws
// InvalidStateError. Destroying a Task that never ran destroys its frame; in debug mode that is reported
// ("coroutine 'f' was never awaited"). To run a Task concurrently, give it to create_task().
//
// Contract of `co_await task`: the awaiting coroutine suspends, the task's coroutine runs on the same
// thread at once (through the loop's trampoline, in constant stack), and the awaiting coroutine resumes
// as soon as the task finishes. Cancellation of the awaiting task reaches whatever the inner task awaits.
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/errors.hpp"

namespace corio {

template <class T = void>
class Task;

namespace detail {

// Defined in src/core: whether "never awaited" reports are on (the running loop's debug flag, or
// CORIO_DEBUG=1 with no loop running).
bool debug_enabled() noexcept;
void report_never_awaited(const PromiseBase& p) noexcept;

struct FinalAwaiter {
  bool await_ready() const noexcept { return false; }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) noexcept {
    PromiseBase& p = h.promise();
    if (TaskStateBase* root = p.root())
      root->complete(p);  // may destroy this frame: touch nothing after
    else
      tl_transfer = p.continuation_;
  }
  void await_resume() const noexcept {}
};

// The result slot. A bare union rather than std::optional, whose flag would cost a word after the base: the
// flag is PromiseBase::has_value_, and a small T lands in PromiseBase's tail padding.
template <class T>
struct PromiseStorage : PromiseBase {
  explicit PromiseStorage(SourceLoc loc) noexcept : PromiseBase(loc) {}
  PromiseStorage(const PromiseStorage&) = delete;
  PromiseStorage& operator=(const PromiseStorage&) = delete;
  ~PromiseStorage() {
    if (has_value_) value_.~T();
  }
  union {
    T value_;  // constructed iff has_value_
  };
  template <class U>
  requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) {
    std::construct_at(std::addressof(value_), std::forward<U>(v));
    has_value_ = true;
  }
  T take() {
    if (exc_) std::rethrow_exception(exc_);
    return std::move(value_);
  }
};

template <>
struct PromiseStorage<void> : PromiseBase {
  using PromiseBase::PromiseBase;
  void return_void() noexcept {}
  void take() {
    if (exc_) std::rethrow_exception(exc_);
  }
};

template <class T>
struct Promise final : PromiseStorage<T> {
  explicit Promise(SourceLoc loc = SourceLoc::current()) noexcept : PromiseStorage<T>(loc) {}

  Task<T> get_return_object() noexcept;
  std::suspend_always initial_suspend() const noexcept { return {}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept {
    this->exc_ = std::current_exception();
    if (this->root()) {
      try {
        throw;
      } catch (const CancelledError&) {
        this->cancelled_exc_ = true;
      } catch (...) {
      }
    }
  }
};

template <class T>
struct TaskAwaiter {
  std::coroutine_handle<Promise<T>> h_;

  bool await_ready() const {
    if (!h_) throw InvalidStateError("co_await on a Task that was moved from");
    if (h_.promise().started_) throw InvalidStateError("co_await on a Task that was already awaited");
    return false;
  }
  template <class P>
  void await_suspend(std::coroutine_handle<P> caller) noexcept {
    Promise<T>& p = h_.promise();
    p.started_ = true;
    p.continuation_ = caller;
    if constexpr (std::is_base_of_v<PromiseBase, P>) p.set_parent(&caller.promise());
    tl_transfer = h_;
  }
  T await_resume() { return h_.promise().take(); }
};

template <class T>
class TaskState;
template <class T>
class ScheduledTask;

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
  static_assert(!std::is_reference_v<T>, "Task<T&> is not supported: return a pointer or a value");
  // Frames and task states are aligned to 16 bytes (g++ 12 never asks for an over-aligned coroutine frame):
  // a result needing more would be misaligned, so it is refused here rather than left undefined.
  static_assert(
      detail::kFrameAligned<T>,
      "Task<T> with an over-aligned T (alignas > 16) is not supported: return it in a std::unique_ptr");

 public:
  using promise_type = detail::Promise<T>;
  using value_type = T;

  Task() noexcept = default;
  Task(Task&& other) noexcept : h_(std::exchange(other.h_, nullptr)) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      reset();
      h_ = std::exchange(other.h_, nullptr);
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  // True while this object holds a coroutine (not moved from).
  bool valid() const noexcept { return static_cast<bool>(h_); }
  explicit operator bool() const noexcept { return valid(); }

  detail::TaskAwaiter<T> operator co_await() const& noexcept { return {h_}; }
  detail::TaskAwaiter<T> operator co_await() const&& noexcept { return {h_}; }

 private:
  friend struct detail::Promise<T>;
  friend class detail::ScheduledTask<T>;
  explicit Task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}

  void reset() noexcept {
    if (h_) {
      if (!h_.promise().started_ && detail::debug_enabled()) detail::report_never_awaited(h_.promise());
      h_.destroy();
      h_ = nullptr;
    }
  }

  std::coroutine_handle<promise_type> h_;
};

template <class T>
Task<T> detail::Promise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}

}  // namespace corio
