// AsyncGenerator<T>: an async generator (Python's `async def` with `yield`).
//
// Inside, `co_await gen.next()` runs the generator until its next co_yield and returns std::optional<T>
// (nullopt once it has returned). An exception inside reaches the consumer through next(). Destroying a
// generator mid-way destroys its frame, running the destructors of everything alive in it (RAII cleanup).
// Destroyed while a task is running it (suspended at an await inside: asyncio refuses to close a running
// generator), the frame is kept until the body reaches its next co_yield or its end, so that nothing the
// body awaits (a task group's children using its locals, a gather, a lock) is torn down under it; then the
// frame is destroyed and that task's next() throws RuntimeError (or what the body threw, CancelledError
// included, if it ended with an exception).
//
// Contract of `co_await gen.next()`: the generator runs at once, inline, in the consumer's task (its awaits
// suspend that task, and cancelling that task cancels them), and the consumer resumes when it yields or
// ends. A generator is move-only and runs in one consumer at a time: a next() while another is running it
// throws RuntimeError, as asyncio's anext() does. A generator whose task was destroyed while running it
// (a loop closed with that task pending) is left mid-await: its next() throws RuntimeError too. The awaiter
// next() returns is awaited once: awaiting it again throws InvalidStateError, as awaiting a Task twice does
// (each value is a new `co_await gen.next()`).
//
// Lives in core (not sync, where DESIGN.md lists it) because flow's as_completed returns one and the
// layering rule lets flow include only core; <corio/sync/async_generator.hpp> re-exports it.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/errors.hpp"

namespace corio {
namespace detail {
// `co_yield GeneratorError{e}` inside a generator: the consumer's next() throws e, and the generator stays
// suspended there, so the next next() goes on after it (as_completed passes a cancelled wait out so).
struct GeneratorError {
  std::exception_ptr error;
};
}  // namespace detail

template <class T>
class [[nodiscard]] AsyncGenerator {
  static_assert(detail::kFrameAligned<std::remove_cvref_t<T>>,
                "AsyncGenerator<T> with an over-aligned T (alignas > 16) is not supported");

 public:
  struct NextAwaiter;
  struct promise_type : detail::PromiseBase {
    explicit promise_type(detail::SourceLoc loc = detail::SourceLoc::current()) noexcept
        : detail::PromiseBase(loc) {}

    struct Yield {
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        detail::tl_transfer = h.promise().continuation_;
      }
      void await_resume() const noexcept {}
    };

    AsyncGenerator get_return_object() noexcept {
      return AsyncGenerator(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    Yield final_suspend() noexcept {
      finished_ = true;
      running_ = nullptr;
      return {};
    }
    template <class U>
    Yield yield_value(U&& v) {
      value_.emplace(std::forward<U>(v));
      running_ = nullptr;
      return {};
    }
    Yield yield_value(detail::GeneratorError e) noexcept {
      exc_ = std::move(e.error);
      running_ = nullptr;
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { exc_ = std::current_exception(); }

    std::optional<T> value_;
    bool finished_ = false;
    bool broken_ = false;  // left suspended at an await by a destroyed task (~NextAwaiter)
    // The AsyncGenerator was destroyed while a task ran it: the frame now belongs to that task's next(),
    // which destroys it once the body yields or ends.
    bool abandoned_ = false;
    NextAwaiter* running_ = nullptr;  // the next() a task is running the generator in, if any
  };

  struct NextAwaiter {
    explicit NextAwaiter(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
    // Move-only, and the moved-from one lets go: a copy (co_await std::move(a), the task a combinator makes
    // of it) kept the handle after the frame was destroyed through the other, and read it when destroyed.
    NextAwaiter(NextAwaiter&& o) noexcept
        : h_(std::exchange(o.h_, nullptr)), task_(std::exchange(o.task_, nullptr)), awaited_(o.awaited_) {
      if (h_ && h_.promise().running_ == &o) h_.promise().running_ = this;
    }
    NextAwaiter& operator=(NextAwaiter&&) = delete;

    std::coroutine_handle<promise_type> h_;
    // The task running the generator, set while it does, with a reference: this awaiter may be destroyed
    // long after the task (in the frame of an outer generator that outlives it).
    detail::TaskStateBase* task_ = nullptr;
    // Set by the first co_await: one next() awaiter is awaited once, as a Task is (a second await would
    // run the generator again under the same awaiter, its task reference taken twice).
    bool awaited_ = false;
    // Destroyed while the generator still counts it as running it (the consumer's frame destroyed with a
    // closing loop): the generator must not reach it any more, and it is left suspended at an await with
    // no task to resume it, so it never runs again. The waiter it is suspended at lets go of the task. An
    // abandoned generator's frame has no other owner: it goes too.
    ~NextAwaiter() {
      if (h_ && h_.promise().running_ == this) {
        promise_type& p = h_.promise();
        p.running_ = nullptr;
        p.broken_ = true;
        if (task_)
          if (detail::Waiter* w = task_->waiter()) w->orphan();
        if (p.abandoned_) h_.destroy();
      }
      if (task_) task_->release();
    }
    bool await_ready() {
      if (awaited_) throw InvalidStateError("co_await on a next() awaiter that was already awaited");
      if (!h_) throw InvalidStateError("next() on an AsyncGenerator that was moved from");
      promise_type& p = h_.promise();
      if (p.running_) throw RuntimeError("anext(): asynchronous generator is already running");
      if (p.broken_)
        throw RuntimeError("the async generator's task was destroyed while it ran the generator");
      awaited_ = true;
      return p.finished_;
    }
    template <class P>
    void await_suspend(std::coroutine_handle<P> caller) noexcept {
      promise_type& p = h_.promise();
      p.continuation_ = caller;
      if constexpr (std::is_base_of_v<detail::PromiseBase, P>) p.set_parent(&caller.promise());
      p.started_ = true;
      detail::LoopCore* loop = detail::LoopCore::running_;
      task_ = loop ? loop->current_ : nullptr;
      if (task_) task_->add_ref();
      p.running_ = this;
      detail::tl_transfer = h_;
    }
    std::optional<T> await_resume() {
      promise_type& p = h_.promise();
      if (p.abandoned_) [[unlikely]] {
        std::exception_ptr e = std::exchange(p.exc_, nullptr);
        std::exchange(h_, nullptr).destroy();
        if (e) std::rethrow_exception(e);
        throw RuntimeError("the async generator was destroyed while this task was running it");
      }
      if (p.exc_) std::rethrow_exception(std::exchange(p.exc_, nullptr));
      if (p.finished_) return std::nullopt;
      std::optional<T> out = std::move(p.value_);
      p.value_.reset();
      return out;
    }
  };

  AsyncGenerator() noexcept = default;
  AsyncGenerator(AsyncGenerator&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  AsyncGenerator& operator=(AsyncGenerator&& o) noexcept {
    if (this != &o) {
      destroy();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  ~AsyncGenerator() { destroy(); }

  // Awaitable: the next value, or nullopt once the generator has returned.
  NextAwaiter next() noexcept { return NextAwaiter(h_); }

 private:
  explicit AsyncGenerator(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}

  // A task suspended inside the frame (at an await of the body) is running the generator: destroying the
  // frame now would tear down what the body awaits (a task group whose children use the body's locals would
  // outlive it), so the frame is handed to that task's next(), which destroys it at the body's next yield
  // or end. Otherwise (not running, or run outside any task) the frame goes at once.
  void destroy() noexcept {
    if (!h_) return;
    promise_type& p = h_.promise();
    NextAwaiter* running = p.running_;
    if (running && running->task_ && !running->task_->done()) {
      p.abandoned_ = true;
      h_ = nullptr;
      return;
    }
    std::exchange(h_, nullptr).destroy();
    if (running) running->h_ = nullptr;  // (it no longer names a frame)
  }

  std::coroutine_handle<promise_type> h_;
};

}  // namespace corio
