// AsyncGenerator<T>: an async generator (Python's `async def` with `yield`).
//
// Inside, `co_yield value` hands a value out and `co_await` works as in any coroutine; outside,
// `co_await gen.next()` runs the generator until its next co_yield and returns std::optional<T> (nullopt
// once it has returned). An exception inside reaches the consumer through next(). Destroying a generator
// mid-way destroys its frame, running the destructors of everything alive in it (RAII cleanup).
//
// Contract of `co_await gen.next()`: the generator runs at once, inline, in the consumer's task (its awaits
// suspend that task, and cancelling that task cancels them), and the consumer resumes when it yields or
// ends. A generator is move-only and runs in one consumer at a time.
//
// Lives in core (not sync, where DESIGN.md lists it) because flow's as_completed returns one and the
// layering rule lets flow include only core; <corio/sync/async_generator.hpp> re-exports it.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <utility>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/errors.hpp"

namespace corio {

template <class T>
class [[nodiscard]] AsyncGenerator {
 public:
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
      return {};
    }
    template <class U>
    Yield yield_value(U&& v) {
      value_.emplace(std::forward<U>(v));
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { exc_ = std::current_exception(); }

    std::optional<T> value_;
    bool finished_ = false;
  };

  struct NextAwaiter {
    std::coroutine_handle<promise_type> h_;
    bool await_ready() const {
      if (!h_) throw InvalidStateError("next() on an AsyncGenerator that was moved from");
      return h_.promise().finished_;
    }
    template <class P>
    void await_suspend(std::coroutine_handle<P> caller) noexcept {
      promise_type& p = h_.promise();
      p.continuation_ = caller;
      if constexpr (std::is_base_of_v<detail::PromiseBase, P>) p.set_parent(&caller.promise());
      p.started_ = true;
      detail::tl_transfer = h_;
    }
    std::optional<T> await_resume() {
      promise_type& p = h_.promise();
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
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  ~AsyncGenerator() {
    if (h_) h_.destroy();
  }

  // Awaitable: the next value, or nullopt once the generator has returned.
  NextAwaiter next() noexcept { return NextAwaiter{h_}; }

 private:
  explicit AsyncGenerator(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

}  // namespace corio
