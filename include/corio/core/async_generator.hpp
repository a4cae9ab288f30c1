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
// (each value is a new `co_await gen.next()`). It does not own the generator (asyncio's anext() keeps it
// alive): one not awaited yet when the generator is destroyed (a create_task(gen.next()) whose task has not
// run) throws RuntimeError when awaited.
//
// `co_await gen.aclose()` closes it as asyncio's aclose(): GeneratorExit is thrown in at the co_yield the
// body is suspended at, the body unwinds (its awaits still work: it runs in the closing task as next()
// does) and must end; one that yields again instead makes aclose() throw RuntimeError. A generator that
// never ran or has ended is simply marked closed. `co_await gen.athrow(e)` throws e in there instead and
// returns what the body yields next (nullopt if it ends). After either, next() returns nullopt once the
// body has ended.
//
// Lives in core (not sync, where DESIGN.md lists it) because flow's as_completed returns one and the
// layering rule lets flow include only core; <corio/sync/async_generator.hpp> re-exports it.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/task.hpp"

namespace corio {
namespace detail {
// `co_yield` a GeneratorError{e} (a named one: see the README on g++ 12) inside a generator: the consumer's
// next() throws e, and the generator stays suspended there, so the next next() goes on after it
// (as_completed passes a cancelled wait out so).
struct GeneratorError {
  std::exception_ptr error;
};

// What a generator's awaiter does: resume it (next), or resume it with an exception thrown in at its co_yield
// (athrow, aclose).
enum class GeneratorOp : unsigned char { next, athrow, aclose };

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

    // The final suspend point: hands back to the consumer; never resumed.
    struct Final {
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        detail::tl_transfer = h.promise().continuation_;
      }
      void await_resume() const noexcept {}
    };
    // A co_yield: hands back to the consumer; athrow()/aclose() resume the body here with an exception to
    // throw.
    struct Yield : Final {
      promise_type* p_;
      void await_resume() const {
        if (p_->inject_) [[unlikely]]
          std::rethrow_exception(std::exchange(p_->inject_, nullptr));
      }
    };

    AsyncGenerator get_return_object() noexcept {
      return AsyncGenerator(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    Final final_suspend() noexcept {
      finished_ = true;
      running_ = nullptr;
      return {};
    }
    template <class U>
    Yield yield_value(U&& v) {
      value_.emplace(std::forward<U>(v));
      running_ = nullptr;
      return {{}, this};
    }
    Yield yield_value(detail::GeneratorError e) noexcept {
      exc_ = std::move(e.error);
      running_ = nullptr;
      return {{}, this};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { exc_ = std::current_exception(); }

    std::optional<T> value_;
    std::exception_ptr inject_;  // athrow()/aclose(): thrown at the co_yield the body resumes from
    bool finished_ = false;
    bool broken_ = false;  // left suspended at an await by a destroyed task (~NextAwaiter)
    // The AsyncGenerator was destroyed while a task ran it: the frame now belongs to that task's next(),
    // which destroys it once the body yields or ends.
    bool abandoned_ = false;
    NextAwaiter* running_ = nullptr;  // the next() a task is running the generator in, if any
    // Every live awaiter of this generator (next(), athrow(), aclose()), so that the generator's destruction
    // reaches those not running it: they must not touch the frame afterwards.
    detail::HListNode* awaiters_ = nullptr;
  };

  struct NextAwaiter : detail::HListNode {
    explicit NextAwaiter(std::coroutine_handle<promise_type> h,
                         detail::GeneratorOp op = detail::GeneratorOp::next,
                         std::exception_ptr e = nullptr) noexcept
        : h_(h), throw_(std::move(e)), op_(op) {
      if (h_) link_front(h_.promise().awaiters_);
    }
    // Move-only, and the moved-from one lets go: a copy (co_await std::move(a), the task a combinator makes
    // of it) kept the handle after the frame was destroyed through the other, and read it when destroyed.
    NextAwaiter(NextAwaiter&& o) noexcept
        : h_(std::exchange(o.h_, nullptr)),
          task_(std::exchange(o.task_, nullptr)),
          throw_(std::move(o.throw_)),
          op_(o.op_),
          awaited_(o.awaited_),
          unstarted_(o.unstarted_),
          gone_(o.gone_) {
      if (o.linked()) {
        o.unlink();
        link_front(h_.promise().awaiters_);
      }
      if (h_ && h_.promise().running_ == &o) h_.promise().running_ = this;
    }
    NextAwaiter& operator=(NextAwaiter&&) = delete;

    std::coroutine_handle<promise_type> h_;
    // The task running the generator, set while it does, with a reference: this awaiter may be destroyed
    // long after the task (in the frame of an outer generator that outlives it).
    detail::TaskStateBase* task_ = nullptr;
    std::exception_ptr throw_;  // athrow()'s exception
    detail::GeneratorOp op_;
    // Set by the first co_await: one next() awaiter is awaited once, as a Task is (a second await would
    // run the generator again under the same awaiter, its task reference taken twice).
    bool awaited_ = false;
    // athrow()/aclose() found a generator that never ran: it is closed without running.
    bool unstarted_ = false;
    // The generator was destroyed while this awaiter was not running it (made, not awaited yet: a
    // create_task(gen.next()) whose task had not run): awaiting it throws RuntimeError.
    bool gone_ = false;
    // Destroyed while the generator still counts it as running it (the consumer's frame destroyed with a
    // closing loop): the generator must not reach it any more, and it is left suspended at an await with
    // no task to resume it, so it never runs again. The waiter it is suspended at lets go of the task. An
    // abandoned generator's frame has no other owner: it goes too.
    ~NextAwaiter() {
      unlink();  // first: the frame (holding the list's head) may be destroyed below
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
      using detail::GeneratorOp;
      const char* what = op_ == GeneratorOp::next     ? "next()"
                         : op_ == GeneratorOp::athrow ? "athrow()"
                                                      : "aclose()";
      if (awaited_)
        throw InvalidStateError(std::string("co_await on a ") + what + " awaiter that was already awaited");
      if (gone_)
        throw RuntimeError(std::string(what) + ": the async generator was destroyed before this was awaited");
      if (!h_) throw InvalidStateError(std::string(what) + " on an AsyncGenerator that was moved from");
      promise_type& p = h_.promise();
      if (p.running_)
        throw RuntimeError(std::string(op_ == GeneratorOp::next ? "anext()" : what) +
                           ": asynchronous generator is already running");
      if (p.broken_)
        throw RuntimeError("the async generator's task was destroyed while it ran the generator");
      if (op_ == GeneratorOp::athrow && !throw_)
        throw RuntimeError("athrow(): no exception given (a null exception_ptr)");
      awaited_ = true;
      if (p.finished_) return true;
      if (op_ != GeneratorOp::next) {
        if (!p.started_) {  // never ran: closed without running, as Python's
          p.finished_ = true;
          unstarted_ = true;
          return true;
        }
        p.inject_ = op_ == GeneratorOp::aclose ? std::make_exception_ptr(GeneratorExit()) : throw_;
      }
      return false;
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
      using detail::GeneratorOp;
      promise_type& p = h_.promise();
      if (p.abandoned_) [[unlikely]] {
        const bool ended = p.finished_;
        std::exception_ptr e = std::exchange(p.exc_, nullptr);
        unlink();
        std::exchange(h_, nullptr).destroy();
        if (op_ == GeneratorOp::aclose && ended && (!e || detail::exception_is<GeneratorExit>(e)))
          return std::nullopt;
        if (e) std::rethrow_exception(e);
        throw RuntimeError("the async generator was destroyed while this task was running it");
      }
      if (unstarted_) [[unlikely]] {
        if (op_ == GeneratorOp::athrow) std::rethrow_exception(throw_);
        return std::nullopt;
      }
      if (p.exc_) {
        std::exception_ptr e = std::exchange(p.exc_, nullptr);
        if (op_ == GeneratorOp::aclose && p.finished_ && detail::exception_is<GeneratorExit>(e))
          return std::nullopt;
        std::rethrow_exception(e);
      }
      if (p.finished_) return std::nullopt;
      std::optional<T> out = std::move(p.value_);
      p.value_.reset();
      if (op_ == GeneratorOp::aclose) [[unlikely]]
        throw RuntimeError("async generator ignored GeneratorExit");
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

  // Awaitable (asyncio's athrow()): throws `e` into the body at the co_yield it is suspended at; returns what
  // the body yields next, or nullopt if it ends; what the body throws comes out here. A generator that never
  // ran is closed without running and `e` comes out here; on one that has ended, nullopt.
  NextAwaiter athrow(std::exception_ptr e) noexcept {
    return NextAwaiter(h_, detail::GeneratorOp::athrow, std::move(e));
  }
  template <class E>
  requires(!std::is_same_v<std::remove_cvref_t<E>, std::exception_ptr>) NextAwaiter athrow(E&& e) {
    return athrow(std::make_exception_ptr(std::forward<E>(e)));
  }

  // asyncio's aclose(): throws GeneratorExit into the body at the co_yield it is suspended at and runs it to
  // its end (its cleanup may await); GeneratorExit, or the body's end, is not an error here; anything else
  // the body throws comes out; a body that yields again instead makes this throw RuntimeError ("async
  // generator ignored GeneratorExit"). A generator that never ran or has ended is only marked closed.
  // Lazy, as a Task: nothing happens until it is awaited. Its awaiter is made at once, so a generator
  // destroyed before then makes it throw RuntimeError (as next()).
  Task<> aclose() { return close_with(NextAwaiter(h_, detail::GeneratorOp::aclose)); }

 private:
  explicit AsyncGenerator(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}

  static Task<> close_with(NextAwaiter a) { (void)co_await a; }

  // A task suspended inside the frame (at an await of the body) is running the generator: destroying the
  // frame now would tear down what the body awaits (a task group whose children use the body's locals would
  // outlive it), so the frame is handed to that task's next(), which destroys it at the body's next yield
  // or end. Otherwise (not running, or run outside any task) the frame goes at once.
  void destroy() noexcept {
    if (!h_) return;
    promise_type& p = h_.promise();
    NextAwaiter* running = p.running_;
    if (running && running->task_ && !running->task_->done()) {
      let_go_of_awaiters(p, running);
      p.abandoned_ = true;
      h_ = nullptr;
      return;
    }
    let_go_of_awaiters(p, nullptr);  // (the running one too: it no longer names a frame)
    std::exchange(h_, nullptr).destroy();
  }
  // Every awaiter but `keep` forgets the frame: awaiting one afterwards throws RuntimeError.
  static void let_go_of_awaiters(promise_type& p, NextAwaiter* keep) noexcept {
    for (detail::HListNode* n = p.awaiters_; n;) {
      detail::HListNode* next = n->next_;
      auto* a = static_cast<NextAwaiter*>(n);
      if (a != keep) {
        a->unlink();
        a->h_ = nullptr;
        a->gone_ = true;
      }
      n = next;
    }
  }

  std::coroutine_handle<promise_type> h_;
};

}  // namespace corio
