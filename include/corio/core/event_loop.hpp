// EventLoop: one per thread, runs one coroutine at a time (asyncio's event loop).
//
// One turn of the loop, in the order the code does it (asyncio's _run_once; docs/design.md walks it):
//   1. poll for I/O, blocking until the next timer is due when nothing is ready (never when something is;
//      under virtual time the clock jumps to that timer instead, unless a to_thread call or DNS lookup is
//      in flight);
//      callbacks sent from other threads are taken in here;
//   2. move the timers due by now to the ready queue;
//   3. run exactly the items that were ready at this point, FIFO; what they make ready waits for the
//      next turn. So sleep(0s) yields exactly one turn and create_task runs the first step next turn.
// Everything not marked thread-safe must be called on the loop's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "corio/core/detail/poller.hpp"
#include "corio/core/detail/runtime.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

namespace corio {

struct RunOptions {
  bool debug = false;                    // also CORIO_DEBUG=1
  Backend backend = Backend::automatic;  // CORIO_BACKEND=epoll|io_uring overrides automatic
  // The clock stands still and jumps to the next timer whenever nothing is ready (a zero-timeout poll brings
  // nothing, whether I/O is pending or not) and no to_thread call or DNS lookup is in flight: timeouts in
  // tests run instantly and deterministically. While such a call is in flight the clock follows real time
  // (its work takes real time; a timeout around it, or a timer it waits for, still comes due).
  bool virtual_time = false;
};

// A callback scheduled with call_soon. Copyable reference; cancel() before it runs and it never runs.
class Handle {
 public:
  Handle() noexcept = default;
  explicit Handle(detail::CallbackNode* n) noexcept : n_(n) {
    if (n_) n_->add_ref();
  }
  Handle(const Handle& o) noexcept : Handle(o.n_) {}
  Handle& operator=(Handle o) noexcept {
    std::swap(n_, o.n_);
    return *this;
  }
  ~Handle() {
    if (n_) n_->release();
  }
  void cancel() noexcept;
  bool cancelled() const noexcept { return n_ && n_->cancelled_; }

 protected:
  detail::CallbackNode* n_ = nullptr;
};

// A callback scheduled with call_later/call_at; cancelling it removes it from the timer heap at once.
class TimerHandle : public Handle {
 public:
  using Handle::Handle;
  // Due time on the loop's clock (seconds, as EventLoop::time()).
  double when() const noexcept { return n_ ? static_cast<double>(n_->when_ns_) / 1e9 : 0.0; }
};

class EventLoop : private detail::LoopCore {
 public:
  explicit EventLoop(RunOptions options = {});
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // The loop's clock in seconds (monotonic; under virtual time, the virtual clock).
  double time() const noexcept { return static_cast<double>(now_ns()) / 1e9; }

  // f() runs on a later turn, after everything scheduled before it (FIFO).
  template <class F>
  Handle call_soon(F f) {
    if (closed_) throw_closed();
    if (debug_) [[unlikely]]
      check_thread();
    auto* n = new detail::FnCallback<F>(std::move(f));
    n->loop_ = this;
    // Callbacks posted from other threads (or from this one before the loop ran) come first: asyncio's
    // call_soon_threadsafe appends to the ready queue at once, so FIFO holds across the two.
    if (remote_pending_.load(std::memory_order_relaxed)) [[unlikely]]
      drain_remote();
    enqueue(*n);
    return Handle(n);
  }
  // f() runs once `delay` has passed (seconds or any std::chrono::duration).
  template <class F>
  TimerHandle call_later(double delay_seconds, F f) {
    return call_at_ns(due_after(static_cast<long double>(delay_seconds) * 1e9L), std::move(f));
  }
  template <class Rep, class Period, class F>
  TimerHandle call_later(std::chrono::duration<Rep, Period> delay, F f) {
    using D = std::chrono::duration<long double, std::nano>;
    return call_at_ns(due_after(std::chrono::duration_cast<D>(delay).count()), std::move(f));
  }
  // f() runs when time() reaches `when`.
  template <class F>
  TimerHandle call_at(double when, F f) {
    return call_at_ns(seconds_to_ns(when), std::move(f));
  }
  // Thread-safe: f() runs on the loop's thread on a later turn; wakes the loop if it is sleeping. Once the
  // loop is closed, f is dropped (destroyed on the caller's thread) and never runs. (asyncio raises
  // RuntimeError there; a helper thread finishing after the loop closed has nobody to tell.) A call_soon
  // made after it (on the loop's thread, the post known to have happened first) runs after it; a task's
  // step or a wake-up scheduled meanwhile may still run first (they are taken in at the next poll).
  template <class F>
  void call_soon_threadsafe(F f) {
    // From the loop's own thread while it runs: straight into the ready queue, so that it keeps its place
    // among call_soon's callbacks (asyncio's is call_soon plus a wake-up).
    if (running_ == this && !closed_) {
      (void)call_soon(std::move(f));
      return;
    }
    post_remote(std::make_unique<detail::FnCallback<F>>(std::move(f)));
  }

  // Runs the loop until stop() is called (the current turn completes first).
  void run_forever();
  // Throws RuntimeError unless run_forever could run now (closed, already running, another loop running).
  void check_runnable() const;
  // Schedules `main` as a task and runs the loop until it is done; returns its value or rethrows.
  template <class T>
  T run_until_complete(Task<T> main) {
    check_runnable();  // (before the task is made: it would be left behind, and run)
    TaskHandle<T> h = spawn(std::move(main));
    run_until_done(*h.state());
    h.state()->exc_retrieved_ = true;
    return detail::state_cast<T>(h.state())->take();
  }
  void stop() noexcept { stopping_ = true; }
  // f() runs on the loop (scheduled like call_soon) each time signal signo arrives; replaces an earlier
  // handler. The signal is blocked for this thread and read through the backend (signalfd). It is the same
  // f every time (a mutable lambda's state carries over, as asyncio calls the one callback); f may be
  // move-only.
  template <class F>
  void add_signal_handler(int signo, F f) {
    auto fp = std::make_shared<F>(std::move(f));
    poller_->add_signal_handler(signo, [this, fp] { call_soon([fp] { (*fp)(); }); });
  }
  // Returns false if no handler was set.
  bool remove_signal_handler(int signo) { return poller_->remove_signal_handler(signo); }
  bool is_running() const noexcept { return running_thread_loop_; }
  // Destroys the tasks still pending (debug mode lists them) and drops queued callbacks. run() cancels the
  // leftovers and waits for them before it closes, so with run() nothing is pending here. Then waits for
  // the loop's helper threads: to_thread calls still running (their results are dropped) and DNS lookups.
  void close();
  bool is_closed() const noexcept { return closed_ || closing_; }

  void set_debug(bool on) noexcept { debug_ = on; }
  bool get_debug() const noexcept { return debug_; }
  // Debug mode logs callbacks and task steps that take longer than this (default 0.1 s).
  void set_slow_callback_duration(double seconds) noexcept {
    slow_callback_ns_ = saturate_ns(static_cast<long double>(seconds) * 1e9L);  // (inf, NaN: never)
  }
  double slow_callback_duration() const noexcept { return static_cast<double>(slow_callback_ns_) / 1e9; }
  Backend backend() const noexcept { return poller_->backend(); }
  bool virtual_time() const noexcept { return virtual_time_; }

  // Internal: the backend (the io layer downcasts it), the loop core, cleanup hooks run by run() before
  // close (the thread pool's shutdown), and run()'s driver.
  detail::Poller& poller() noexcept { return *poller_; }
  static EventLoop& from_core(detail::LoopCore& core) noexcept { return static_cast<EventLoop&>(core); }
  detail::LoopCore& core() noexcept { return *this; }
  // A shutdown hook runs on the loop's thread and detaches what it owns (a thread pool), returning the
  // function that joins it, which may run on another thread: run() joins while the loop still runs, so a
  // call still running may use the loop meanwhile (asyncio's shutdown_default_executor); close() joins
  // on the spot.
  using ShutdownHook = std::function<std::function<void()>()>;
  void add_shutdown_hook(ShutdownHook hook) { shutdown_hooks_.push_back(std::move(hook)); }
  // State a layer above core keeps per loop (to_thread's pool, the resolver), null until that layer sets
  // it; kept until the loop is destroyed. key: the address of a static object of that layer.
  std::shared_ptr<void>& local(const void* key);
  void run_until_done(detail::TaskStateBase& task);
  void shutdown_and_close() noexcept;
  template <class T>
  TaskHandle<T> spawn(Task<T> main) {
    ActivateScope scope(*this);
    return create_task(std::move(main), {}, detail::SourceLoc{});
  }

  // A due time no clock reaches, far enough from the limits that adding or subtracting a time never
  // overflows: delays and times beyond it (1e10 s, years as hours) saturate to it, as sleep()'s do.
  static constexpr std::int64_t kForeverNs = INT64_MAX / 2;
  static std::int64_t saturate_ns(long double ns) noexcept {
    if (!(ns < static_cast<long double>(kForeverNs))) return kForeverNs;  // (NaN too)
    if (ns <= -static_cast<long double>(kForeverNs)) return -kForeverNs;
    return static_cast<std::int64_t>(std::llroundl(ns));
  }

 private:
  friend class Handle;

  // Makes this the thread's loop for create_task outside run_forever (run() creates the main task so).
  struct ActivateScope {
    explicit ActivateScope(EventLoop& l);
    ~ActivateScope();
    detail::LoopCore* prev_;
  };

  // Rounds to the nearest nanosecond: truncating would make call_at(1.001) due at 1.000999999, so the
  // callback would run while time() < when.
  static std::int64_t seconds_to_ns(double s) noexcept {
    return saturate_ns(static_cast<long double>(s) * 1e9L);
  }
  std::int64_t due_after(long double delay_ns) const noexcept {
    const std::int64_t d = saturate_ns(delay_ns);
    const std::int64_t now = now_ns();
    return d >= kForeverNs - now ? kForeverNs : now + d;
  }
  template <class F>
  TimerHandle call_at_ns(std::int64_t when_ns, F f) {
    if (closed_) throw_closed();
    if (debug_) [[unlikely]]
      check_thread();
    auto* n = new detail::FnCallback<F>(std::move(f));
    n->loop_ = this;
    add_timer(*n, when_ns);
    return TimerHandle(n);
  }
  void post_remote(std::unique_ptr<detail::CallbackNode> n);
  // Debug mode, as asyncio's: RuntimeError when the loop runs on another thread than the caller's (a
  // call_soon or call_later that should have been call_soon_threadsafe).
  void check_thread() const;
  void run_once();
  // Steps 1-3 of run_once when nothing is ready: the timeout, virtual time, the poll.
  void wait_for_work();
  void follow_real_time() noexcept;
  std::size_t poll_io(std::int64_t timeout_ns);
  std::size_t drain_remote();
  void cancel_all_tasks();
  // Runs the shutdown hooks (on this thread); returns their joins.
  std::vector<std::function<void()>> detach_helpers() noexcept;
  // run()'s way: the joins run on a thread of their own while this loop runs until they are done.
  void join_helpers_while_running() noexcept;

  std::unique_ptr<detail::Poller> poller_;
  std::vector<ShutdownHook> shutdown_hooks_;
  std::vector<std::pair<const void*, std::shared_ptr<void>>> locals_;
  bool stopping_ = false;
  bool running_thread_loop_ = false;
  bool closing_ = false;                      // close() is sweeping what is left; closed_ once it is done
  std::atomic<std::thread::id> thread_id_{};  // the thread running run_forever, if any (check_thread)

  // Cross-thread queue. Memory ordering: post_remote stores remote_pending_ then loads sleeping_; the loop
  // stores sleeping_ then loads remote_pending_ before it blocks. Both seq_cst, so at least one side sees
  // the other: either the loop does not block, or the poster wakes it (one eventfd write, only then).
  std::mutex remote_mu_;
  std::vector<std::unique_ptr<detail::CallbackNode>> remote_;
  bool remote_closed_ = false;  // guarded by remote_mu_: the loop is closed, posts are dropped
  std::atomic<bool> remote_pending_{false};
  std::atomic<bool> sleeping_{false};
};

// The loop running on this thread; throws RuntimeError outside one.
EventLoop& get_running_loop();

}  // namespace corio
