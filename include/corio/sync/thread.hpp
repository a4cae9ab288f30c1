// Thread offload: to_thread (asyncio.to_thread) and run_coroutine_threadsafe.
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

namespace corio {
namespace detail {

// A pool of worker threads owned by one event loop; threads start on demand up to the size. Thread-safe.
class ThreadPool {
 public:
  explicit ThreadPool(std::size_t max_threads);
  ~ThreadPool();  // finishes queued jobs, joins every thread
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void submit(std::function<void()> job);
  std::size_t max_threads() const noexcept { return max_threads_; }
  // Takes no more jobs: each thread finishes the queued ones, then exits (the destructor still joins).
  void retire();
  // Retired, and every thread has exited: the destructor joins at once.
  bool finished();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::size_t max_threads_;
};

// The running loop's pool, created on first use; closing the loop joins it.
ThreadPool& loop_thread_pool();

// Starts a thread with every asynchronous signal blocked, so that a signal sent to the process is never
// delivered to it: the loop takes signals from a signalfd, which sees only signals blocked in every thread
// (a helper thread with SIGTERM unblocked would die of it, and take the program with it). Faults (SIGSEGV,
// SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS) stay deliverable.
std::thread start_thread_without_signals(std::function<void()> f);

// Result slot shared by the awaiting task (loop thread) and the worker. The worker writes result/error
// before posting completion with call_soon_threadsafe, whose queue mutex orders that write before the
// loop's read; `waiter` is touched on the loop thread only.
template <class R>
struct ThreadCall {
  std::optional<std::conditional_t<std::is_void_v<R>, char, R>> value;
  std::exception_ptr error;
  Waiter* waiter = nullptr;
  bool done = false;
};

template <class R>
struct ThreadAwaiter final : Waiter {
  std::shared_ptr<ThreadCall<R>> call;
  std::function<void()> job;

  ThreadAwaiter() = default;
  // The completion may arrive after this awaiter is gone (its frame destroyed while suspended): it must not
  // find a dangling waiter.
  ~ThreadAwaiter() {
    if (call && call->waiter == this) call->waiter = nullptr;
  }

  bool await_ready() const noexcept { return false; }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    suspend_on(h);
    if (!suspended()) return;  // cancelled before it started: nothing was submitted
    call->waiter = this;
    LoopCore& loop = *task_->loop_;
    ++loop.inhibit_auto_advance_;
    try {
      loop_thread_pool().submit(std::move(job));
    } catch (...) {
      // Not submitted (no thread to be had): the task is not suspended after all; it gets the error.
      --loop.inhibit_auto_advance_;
      call->waiter = nullptr;
      task_->set_waiter(nullptr);
      throw;
    }
  }
  R await_resume() {
    throw_if_cancelled();
    if (call->error) std::rethrow_exception(call->error);
    if constexpr (!std::is_void_v<R>) return std::move(*call->value);
  }
  bool cancel() override {
    call->waiter = nullptr;  // the thread keeps running; its result is dropped
    return cancel_and_wake();
  }
  void describe(std::string& out) const override { out += "to_thread call"; }
};

}  // namespace detail

// Runs f(args...) on the loop's thread pool (default size min(32, cores + 4); see set_to_thread_workers)
// and returns its result; exceptions cross back intact. The awaiting task suspends and is resumed by the
// loop on a turn after the call returned. Cancelling it stops the waiting only: the thread runs the call
// to its end and the result is dropped safely. Under virtual time the clock does not jump while a call runs:
// it follows real time, so a timeout around the call still expires.
template <class F, class... Args>
Task<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>> to_thread(F f, Args... args) {
  using R = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
  auto call = std::make_shared<detail::ThreadCall<R>>();
  EventLoop* loop = &get_running_loop();
  detail::ThreadAwaiter<R> awaiter;
  awaiter.call = call;
  auto body = [call, loop, fn = std::move(f), tup = std::make_tuple(std::move(args)...)]() mutable {
    try {
      if constexpr (std::is_void_v<R>) {
        std::apply(fn, std::move(tup));
        call->value.emplace('\0');
      } else {
        call->value.emplace(std::apply(fn, std::move(tup)));
      }
    } catch (...) {
      call->error = std::current_exception();
    }
    // The job gives its reference to the completion: the result (if nobody waits any more) is then
    // destroyed on the loop's thread, not whenever the worker gets round to destroying the job.
    loop->call_soon_threadsafe([call = std::move(call), loop] {
      call->done = true;
      --loop->core().inhibit_auto_advance_;
      if (call->waiter && call->waiter->suspended()) call->waiter->wake();
    });
  };
  // std::function needs a copyable target; move-only callables and arguments live behind a shared_ptr.
  awaiter.job = [body = std::make_shared<decltype(body)>(std::move(body))] { (*body)(); };
  co_return co_await awaiter;
}

// Sets the size of the running loop's thread pool; call before the first to_thread. The size is kept for
// the calling thread: loops run on this thread later (and one run after a call made outside any loop) use
// it too, until it is set again (0: the default size).
void set_to_thread_workers(std::size_t n);

// The future run_coroutine_threadsafe returns: a std::future<T> that can also cancel the task it waits
// for, from any thread (asyncio's concurrent.futures.Future.cancel()).
template <class T>
class ThreadsafeFuture : public std::future<T> {
 public:
  struct Shared {
    std::mutex mu;
    // The loop, while the task may still need cancelling; null once the task's bridge has ended or the loop
    // dropped the not-yet-started bridge (both on the loop's thread, before the loop can be destroyed), so
    // cancel() never reaches a loop that is gone. Guarded by mu.
    EventLoop* loop = nullptr;
    TaskHandle<void> handle;        // loop thread only
    bool cancel_requested = false;  // loop thread only
  };
  ThreadsafeFuture(std::future<T> f, std::shared_ptr<Shared> s)
      : std::future<T>(std::move(f)), s_(std::move(s)) {}

  // Thread-safe: asks the loop to cancel the task; the future then holds CancelledError (unless the task
  // finished first or swallows the cancellation). Does nothing once the task has ended or its loop is gone
  // (closed or destroyed).
  void cancel() {
    if (!s_) throw std::future_error(std::future_errc::no_state);  // (moved from)
    std::lock_guard<std::mutex> lock(s_->mu);
    if (!s_->loop) return;
    s_->loop->call_soon_threadsafe([s = s_] {
      s->cancel_requested = true;
      if (s->handle) s->handle.cancel("cancelled by run_coroutine_threadsafe's caller");
    });
  }

 private:
  std::shared_ptr<Shared> s_;
};

// From another thread: schedules `task` on `loop` (thread-safe) and returns a future for its result.
// Exceptions (CancelledError included) reach the future intact; the future's cancel() cancels the task. If
// the loop closes before the task ran or finished, the future holds CancelledError.
template <class T>
ThreadsafeFuture<T> run_coroutine_threadsafe(Task<T> task, EventLoop& loop) {
  using Shared = typename ThreadsafeFuture<T>::Shared;
  auto promise = std::make_shared<std::promise<T>>();
  auto shared = std::make_shared<Shared>();
  shared->loop = &loop;
  ThreadsafeFuture<T> future(promise->get_future(), shared);
  // Travels with the task: first in the callback posted to the loop, then in the bridge task's frame. So it
  // dies on the loop's side whatever happens — the bridge ends, or the loop closes first and drops the
  // callback or the bridge — and before the loop itself can go. It then drops the TaskHandle (whose count
  // is not thread-safe: ~Shared may run on the caller's thread), tells cancel() the loop is out of reach,
  // and settles the promise with CancelledError if the bridge never did, rather than leaving the caller a
  // broken_promise.
  struct Link {
    std::shared_ptr<std::promise<T>> promise;
    std::shared_ptr<Shared> shared;
    bool settled = false;
    Link(std::shared_ptr<std::promise<T>> p, std::shared_ptr<Shared> s)
        : promise(std::move(p)), shared(std::move(s)) {}
    Link(Link&& o) noexcept
        : promise(std::move(o.promise)), shared(std::move(o.shared)), settled(o.settled) {}
    ~Link() {
      if (!promise) return;  // moved from
      {
        std::lock_guard<std::mutex> lock(shared->mu);
        shared->loop = nullptr;
      }
      if (!settled) {
        try {
          promise->set_exception(
              std::make_exception_ptr(CancelledError("run_coroutine_threadsafe: task cancelled")));
        } catch (...) {
        }
      }
      shared->handle = TaskHandle<void>();
    }
  };
  auto bridge = [](TaskHandle<T> h, Link link) -> Task<> {
    try {
      if constexpr (std::is_void_v<T>) {
        co_await std::move(h);
        link.promise->set_value();
      } else {
        link.promise->set_value(co_await std::move(h));
      }
    } catch (...) {
      if (h.done() && !h.cancelled()) {
        // The bridge itself was cancelled (run()'s shutdown) after the task had ended, before the bridge
        // resumed: the task's outcome still goes to the future, as asyncio's done callback copies it.
        try {
          if constexpr (std::is_void_v<T>) {
            detail::state_cast<T>(h.state())->take();
            link.promise->set_value();
          } else {
            link.promise->set_value(detail::state_cast<T>(h.state())->take());
          }
        } catch (...) {
          link.promise->set_exception(std::current_exception());
        }
      } else {
        link.promise->set_exception(std::current_exception());
      }
    }
    link.settled = true;
  };
  // The task is scheduled on its own (as asyncio's ensure_future) and the bridge awaits it: cancelled
  // before its first step, it ends as any scheduled task does (a bridge holding the unstarted Task as a
  // parameter destroyed it unrun, which debug mode reported as "never awaited").
  loop.call_soon_threadsafe([bridge, t = std::move(task), link = Link(promise, shared)]() mutable {
    std::shared_ptr<Shared> s = link.shared;
    TaskHandle<T> h = create_task(std::move(t));
    s->handle = h;
    create_task(bridge(std::move(h), std::move(link)));
    if (s->cancel_requested) s->handle.cancel("cancelled by run_coroutine_threadsafe's caller");
  });
  return future;
}

}  // namespace corio
