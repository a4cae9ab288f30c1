// Non-template parts of the core runtime: the frame allocator's slow path, logging, task state, the loop.
#include <algorithm>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iterator>
#include <mutex>
#include <thread>
#include <vector>

#include "corio/core/event_loop.hpp"
#include "corio/core/log.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task_handle.hpp"

namespace corio {

// Every task pays for its state: the flags must stay packed beside the id (W1 and W2 measure this).
static_assert(sizeof(detail::TaskState<int>) == 80);

// ---------------------------------------------------------------- logging

namespace {
std::function<void(std::string_view)>& log_sink() {
  static std::function<void(std::string_view)> sink;
  return sink;
}
}  // namespace

std::function<void(std::string_view)> set_log_handler(std::function<void(std::string_view)> handler) {
  return std::exchange(log_sink(), std::move(handler));
}

void detail::log(std::string_view message) noexcept {
  auto sink_failed = [message](const char* what) {
    std::fprintf(stderr, "corio: the log handler threw (%s) on: %.*s\n", what,
                 static_cast<int>(message.size()), message.data());
  };
  if (auto& sink = log_sink()) {
    try {
      sink(message);
    } catch (const std::exception& e) {
      sink_failed(e.what());
    } catch (...) {
      sink_failed("unknown exception");
    }
    return;
  }
  std::fprintf(stderr, "corio: %.*s\n", static_cast<int>(message.size()), message.data());
}

std::string ExceptionGroup::describe(const std::string& msg, const std::vector<std::exception_ptr>& excs) {
  std::string out =
      msg + " (" + std::to_string(excs.size()) + " sub-exception" + (excs.size() == 1 ? "" : "s");
  for (const auto& e : excs) {
    out += "; ";
    try {
      std::rethrow_exception(e);
    } catch (const CancelledError& c) {
      out += std::string("CancelledError: ") + c.what();
    } catch (const std::exception& x) {
      out += x.what();
    } catch (...) {
      out += "unknown exception";
    }
  }
  return out + ")";
}

namespace detail {

// ---------------------------------------------------------------- debug

namespace {
bool env_debug() {
  static const bool on = [] {
    const char* v = std::getenv("CORIO_DEBUG");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

// " (what)", or nothing for an empty `what`.
std::string in_parens(const std::string& what) { return what.empty() ? what : " (" + what + ")"; }

std::string format_loc(const SourceLoc& loc) {
  std::string out = "'";
  out += loc.function();
  out += '\'';
  if (loc.line()) {
    out += " (";
    out += loc.file();
    out += ':';
    out += std::to_string(loc.line());
    out += ')';
  }
  return out;
}
}  // namespace

bool debug_enabled() noexcept { return LoopCore::running_ ? LoopCore::running_->debug_ : env_debug(); }

void report_never_awaited(const PromiseBase& p) noexcept {
  try {
    log("coroutine " + format_loc(p.loc_) + " was never awaited");
  } catch (...) {
  }
}

// ---------------------------------------------------------------- loop core

constinit thread_local LoopCore* LoopCore::running_ = nullptr;

namespace {
std::int64_t monotonic_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

std::int64_t LoopCore::now_ns() const noexcept { return virtual_time_ ? virtual_now_ : monotonic_ns(); }

LoopCore& LoopCore::current_loop() {
  if (!running_) throw RuntimeError("no running event loop");
  return *running_;
}

void LoopCore::no_current_task() {
  current_loop();  // throws "no running event loop" when that is the reason
  throw RuntimeError("corio awaitable used outside a task of the running loop");
}

void CallbackNode::run_ready() {
  if (!cancelled_) {
    // Slow-callback detection measures work, so it reads the real clock, also under virtual time. Whether
    // to time the callback is decided before it runs (it may turn debug mode on).
    const bool timed = loop_->debug_;
    const std::int64_t start = timed ? monotonic_ns() : 0;
    running_ = true;
    try {
      invoke();
    } catch (const CancelledError&) {
      log("CancelledError escaped a callback");
    } catch (const std::exception& e) {
      log(std::string("Exception in callback: ") + e.what());
    } catch (...) {
      log("Exception in callback: unknown exception");
    }
    running_ = false;
    if (timed) {
      std::int64_t took = monotonic_ns() - start;
      if (took >= loop_->slow_callback_ns_)
        log("Executing callback took " + std::to_string(static_cast<double>(took) / 1e9) + " seconds");
    }
  }
  clear();
  release();
}

void CallbackNode::fire() { loop_->enqueue(*this); }

// ---------------------------------------------------------------- task state

TaskStateBase::TaskStateBase(LoopCore& loop, std::coroutine_handle<> frame) noexcept
    : loop_(&loop), frame_(frame.address()) {}

TaskStateBase::~TaskStateBase() {
  if (!done()) {
    // Only reachable if create_task failed half-way: the loop holds a reference until the task ends.
    if (frame_) std::coroutine_handle<>::from_address(frame_).destroy();
    free_extras();
    return;
  }
  if (status_ == Status::failed && !exc_retrieved_) [[unlikely]]
    report_never_retrieved();
  exc_.~exception_ptr();
  if (has_extras_ || watchers_) free_extras();  // (watchers_ is the live member unless has_extras_)
}

void TaskStateBase::report_never_retrieved() const noexcept {
  try {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(exc_);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    if (is_future_)
      log("Future exception was never retrieved: " + what);
    else
      log("Task exception was never retrieved: task '" + name() + "'" + in_parens(created_at()) + ": " +
          what);
  } catch (...) {
  }
}

void TaskStateBase::free_extras() noexcept {
  drop_watchers();
  Extras* x = extras_if();
  if (!x) return;
  has_extras_ = false;
  watchers_ = nullptr;
  delete x;
}

void TaskStateBase::drop_watchers() noexcept {
  // The head is looked up on each pass: a dropped callback's destructor may cancel or rename the task,
  // which moves the list into new Extras (the slot that held the head then holds the Extras).
  while (HListNode* n = watcher_head()) {
    n->unlink();
    static_cast<DoneWatcher*>(n)->dropped();
  }
}

void TaskStateBase::notify_watchers() noexcept {
  // The list holds the newest first: move the watchers to a local list, which reverses them, and tell
  // them from there (a watcher told may unlink another). Watchers added meanwhile are told in a next round.
  for (;;) {
    HListNode*& head = watcher_head();
    if (!head) return;
    HListNode* oldest_first = nullptr;
    while (HListNode* n = head) {
      n->unlink();
      n->link_front(oldest_first);
    }
    while (HListNode* n = oldest_first) {
      n->unlink();
      static_cast<DoneWatcher*>(n)->on_done(*this);
    }
  }
}

std::string TaskStateBase::created_at() const {
  const Extras* x = extras_if();
  if (!x || !x->created.known()) return {};
  const SourceLoc& c = x->created;
  if (!c.line()) return std::string("created in '") + c.function() + "'";
  return std::string("created at ") + c.file() + ':' + std::to_string(c.line());
}

void TaskStateBase::attached_elsewhere() const {
  throw RuntimeError("task '" + name() + "' is attached to a different loop than the running one");
}

std::string TaskStateBase::name() const {
  const Extras* x = extras_if();
  if (x && x->named) return x->name;
  return is_future_ ? std::string("Future") : "Task-" + std::to_string(id_);
}

bool TaskStateBase::cancel(std::string msg) {
  if (done() || future_cancel_pending()) {
    exc_retrieved_ = true;  // asyncio's Task.cancel() clears _log_traceback first, even on a done task
    return false;
  }
  // The tasks passing the request on to their waiter (cancelling_ set), cleared on the way out.
  struct Path {
    TaskStateBase* first[8];
    std::size_t n = 0;
    std::vector<TaskStateBase*> more;
    void add(TaskStateBase* t) {
      if (n < std::size(first))
        first[n++] = t;
      else
        more.push_back(t);
      t->cancelling_ = true;
    }
    ~Path() {
      for (std::size_t i = 0; i < n; ++i) first[i]->cancelling_ = false;
      for (TaskStateBase* t : more) t->cancelling_ = false;
    }
  } path;
  // Down a chain of tasks each awaiting the next one's handle, the request goes on in this loop (a waiter's
  // cancel_target()) rather than through HandleAwaiter::cancel's call back into cancel(): a chain of
  // 100,000 such tasks overflowed the stack. Every task reached is pending, so each returns true.
  for (TaskStateBase* t = this;;) {
    Extras& x = t->extras();
    ++x.cancel_requests;
    // Each request its own message, as asyncio (an empty one clears it), until a waiter has taken one and
    // woken the task with it: a later request before the task runs leaves that one (asyncio: the future
    // the task waited on was cancelled with the first message, and that CancelledError is what the task
    // sees).
    if (!t->cancel_woken_) x.cancel_msg = std::move(msg);
    if (t->is_future_) [[unlikely]] {
      // A future (awaited down the chain, or cancelled itself) ends cancelled on the loop's next turn, as a
      // task not started yet does (no combinator sees a child end inside its own cancel() call); to its
      // handles it reads cancelled at once (see TaskHandle::done()).
      t->must_cancel_ = true;
      t->loop_->schedule(*t);
      return true;
    }
    Waiter* w = t->waiter();
    if (!w) {
      t->must_cancel_ = true;
      return true;
    }
    if (t->cancelling_) {
      // Re-entered: the request went round a cycle of tasks awaiting each other back to this one. Passing
      // it on again would go round for ever; this task's wait ends with CancelledError instead.
      return w->cancel_and_wake();
    }
    path.add(t);
    TaskStateBase* next = w->cancel_target();
    if (!next) {
      if (!w->cancel()) t->must_cancel_ = true;
      return true;
    }
    if (next->done() || next->future_cancel_pending()) {
      // (What next->cancel() does for a done task, returning false: the request stays on this one.)
      next->exc_retrieved_ = true;
      t->must_cancel_ = true;
      return true;
    }
    msg = t->cancel_message();
    t = next;
  }
}

int TaskStateBase::uncancel() noexcept {
  int n = 0;
  if (Extras* x = extras_if(); x && x->cancel_requests > 0) n = --x->cancel_requests;
  if (n == 0 && !is_future_) must_cancel_ = false;  // (a future's cancellation is not withdrawn)
  return n;
}

void TaskStateBase::check_result_slow() {
  switch (status_) {
    case Status::pending:
      if (is_future_ && must_cancel_) throw CancelledError(cancel_message());  // (ends on the next turn)
      throw InvalidStateError("result(): task '" + name() + "' is not done");
    case Status::cancelled:
      exc_retrieved_ = true;
      if (exc_) std::rethrow_exception(exc_);
      throw CancelledError(cancel_message());
    case Status::failed:
      exc_retrieved_ = true;
      std::rethrow_exception(exc_);
    case Status::finished:
      return;
  }
}

void TaskStateBase::add_callback(std::unique_ptr<CallbackNode> cb) {
  cb->loop_ = loop_;
  if (done()) {
    // A handle may outlive its loop (returned out of run()): nothing may be scheduled there then.
    if (!loop_) LoopCore::throw_closed();
    loop_->enqueue(*cb.release());
    return;
  }
  add_watcher(*new UserCallback(std::move(cb)));
}

void TaskStateBase::run_ready() {
  queued_ = false;
  if (done()) return;
  LoopCore& loop = *loop_;
  if (loop.debug_ || (!started_ && (must_cancel_ || is_future_))) [[unlikely]] {
    run_first_or_debug();
    return;
  }
  // The common step: the first (the root frame), or resume where the task was woken. Kept free of the
  // rare paths so that it saves few registers.
  void* h;
  if (started_) [[likely]] {
    h = resume_;  // (resume_ goes stale: see has_resume_)
  } else {
    started_ = true;
    h = frame_;
  }
  loop.current_ = this;
  resume_chain(std::coroutine_handle<>::from_address(h));
  loop.current_ = nullptr;
}

void TaskStateBase::run_first_or_debug() {
  LoopCore& loop = *loop_;
  loop.current_ = this;
  std::coroutine_handle<> h;
  if (!started_) {
    if (is_future_ && !must_cancel_) [[unlikely]] {  // (a future runs only to end cancelled)
      loop.current_ = nullptr;
      return;
    }
    started_ = true;
    if (must_cancel_) {
      // Cancelled before its first step: the body never runs (asyncio throws into the unstarted coroutine).
      must_cancel_ = false;
      end(Status::cancelled, std::make_exception_ptr(CancelledError(cancel_message())));
      finish();
      loop.current_ = nullptr;
      return;
    }
    h = std::coroutine_handle<>::from_address(frame_);
  } else {
    h = std::coroutine_handle<>::from_address(resume_);
    set_waiter(nullptr);
  }
  if (loop.debug_) {
    add_ref();
    std::int64_t start = monotonic_ns();
    resume_chain(h);
    std::int64_t took = monotonic_ns() - start;
    if (took >= loop.slow_callback_ns_)
      log("Executing task '" + name() + "'" + in_parens(created_at()) + " took " +
          std::to_string(static_cast<double>(took) / 1e9) + " seconds");
    loop.current_ = nullptr;
    release();
    return;
  }
  resume_chain(h);
  loop.current_ = nullptr;
}

void TaskStateBase::end(Status s, std::exception_ptr e) noexcept {
  void* frame = frame_;
  std::construct_at(&exc_, std::move(e));  // frame_ and exc_ share storage: done() now selects exc_
  status_ = s;
  if (frame) std::coroutine_handle<>::from_address(frame).destroy();
}

void TaskStateBase::complete(PromiseBase& root) noexcept {
  if (root.exc_) {
    end(root.cancelled_exc_ ? Status::cancelled : Status::failed, root.exc_);
  } else if (cancel_pending()) {
    // Cancelled while running, then returned without awaiting again: asyncio ends such a task cancelled.
    must_cancel_ = false;
    cancel_woken_ = false;
    end(Status::cancelled, std::make_exception_ptr(CancelledError(cancel_message())));
  } else {
    take_value(root);
    end(Status::finished, nullptr);
  }
  finish();
}

void TaskStateBase::finish() noexcept {
  ListNode::unlink();  // from the loop's list of pending tasks to its finished ones
  loop_->done_tasks_.push_back(*this);
  if (watcher_head()) notify_watchers();  // (the done callbacks among them are scheduled, in order)
  release();                              // the loop's reference
}

void TaskStateBase::abandon() noexcept {
  add_ref();  // dropping the done callbacks below may drop the last handle to this task
  ListNode::unlink();
  loop_->done_tasks_.push_back(*this);
  // The loop is closing, so done callbacks will never run: they go with the other watchers. Each holds a
  // handle to this task: kept, they would keep the task (and what they captured) alive forever.
  drop_watchers();
  if (status_ == Status::pending) {
    exc_retrieved_ = true;
    // (A future cancelled already, due to end on the next turn, keeps its own message.)
    end(Status::cancelled, std::make_exception_ptr(CancelledError(
                               future_cancel_pending() ? cancel_message() : "event loop closed")));
  }
  release();  // the loop's reference
  release();
}

std::string TaskStateBase::awaiting() const {
  if (done()) return "done";
  if (is_future_) return "a future: not set yet";
  if (Waiter* w = waiter()) {
    std::string out;
    w->describe(out);
    return out;
  }
  if (loop_->current_ == this) return "running";
  return started_ ? "ready" : "not started";
}

void TaskStateBase::dump(std::string& out) const {
  out += "Task '" + name() + "' (";
  out += done() ? "done" : (started_ ? "pending" : "not started");
  if (int n = cancelling()) out += ", cancelling=" + std::to_string(n);
  out += ")\n  awaiting: " + awaiting() + "\n";
  // The chain of coroutines, innermost first.
  const Waiter* w = waiter();
  const PromiseBase* p = w ? w->promise_ : nullptr;
  for (; p; p = p->parent()) {
    out += "  in ";
    out += p->loc_.function();
    if (p->loc_.line()) {
      out += " (";
      out += p->loc_.file();
      out += ':';
      out += std::to_string(p->loc_.line());
      out += ')';
    }
    out += '\n';
  }
  if (std::string created = created_at(); !created.empty()) out += "  " + created + '\n';
}

// ---------------------------------------------------------------- sleep

Task<> sleep_ns(std::int64_t ns) { co_await Sleep(ns); }

}  // namespace detail

// ---------------------------------------------------------------- event loop

namespace {
Backend backend_from_env(Backend requested) {
  if (requested != Backend::automatic) return requested;
  const char* v = std::getenv("CORIO_BACKEND");
  if (!v || !*v) return requested;
  if (std::strcmp(v, "epoll") == 0) return Backend::epoll;
  if (std::strcmp(v, "io_uring") == 0) return Backend::io_uring;
  throw RuntimeError(std::string("CORIO_BACKEND=") + v + ": expected epoll or io_uring");
}
}  // namespace

namespace detail {
void LoopCore::throw_closed() { throw RuntimeError("Event loop is closed"); }
std::uint64_t LoopCore::new_serial() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace detail

EventLoop::EventLoop(RunOptions options) {
  // The environment's CORIO_DEBUG, not the running loop's flag: a loop made inside another (to run on a
  // thread, say) does not inherit that loop's debug mode, as asyncio's loops each read PYTHONASYNCIODEBUG.
  debug_ = options.debug || detail::env_debug();
  virtual_time_ = options.virtual_time;
  if (virtual_time_) real_stamp_ns_ = detail::monotonic_ns();
  poller_ = detail::make_poller(backend_from_env(options.backend), debug_);
}

EventLoop::~EventLoop() { close(); }

EventLoop::ActivateScope::ActivateScope(EventLoop& l) : prev_(running_) { running_ = &l; }
EventLoop::ActivateScope::~ActivateScope() { running_ = prev_; }

void Handle::cancel() noexcept {
  detail::CallbackNode* n = n_;  // (clear() may destroy this Handle: a callback that captured its owner)
  if (!n || n->cancelled_) return;
  n->cancelled_ = true;
  // Let go of the callback now, as asyncio's Handle.cancel() (unless it is the one running: then once it
  // has returned). One in the ready queue stays there, cancelled, until the loop reaches it.
  if (n->scheduled()) {
    n->loop_->timers_.remove(*n);
    n->clear();
    n->release();  // the heap's reference
  } else if (!n->running_) {
    n->add_ref();  // (what clear() destroys may release the last other reference)
    n->clear();
    n->release();
  }
}

void EventLoop::post_remote(std::unique_ptr<detail::CallbackNode> n) {
  n->loop_ = this;
  {
    std::unique_lock<std::mutex> lock(remote_mu_);
    if (remote_closed_) {
      lock.unlock();
      return;  // closed: the callback will never run (n is destroyed here, on the poster's thread)
    }
    remote_.push_back(std::move(n));
    remote_pending_.store(true, std::memory_order_seq_cst);
    // Still under the lock: close() takes it before the loop and its poller can go. After the unlock, the
    // loop may run this callback, close and be destroyed before this thread reads another byte of it.
    if (sleeping_.load(std::memory_order_seq_cst)) poller_->wake();
  }
}

std::size_t EventLoop::drain_remote() {
  if (!remote_pending_.load(std::memory_order_acquire)) return 0;
  std::vector<std::unique_ptr<detail::CallbackNode>> batch;
  {
    std::lock_guard<std::mutex> lock(remote_mu_);
    batch.swap(remote_);
    remote_pending_.store(false, std::memory_order_relaxed);
  }
  for (auto& n : batch) enqueue(*n.release());
  return batch.size();
}

std::size_t EventLoop::poll_io(std::int64_t timeout_ns) {
  if (timeout_ns != 0) {
    sleeping_.store(true, std::memory_order_seq_cst);
    if (remote_pending_.load(std::memory_order_seq_cst)) timeout_ns = 0;
  }
  std::size_t n = poller_->poll(timeout_ns);
  sleeping_.store(false, std::memory_order_relaxed);
  if (remote_pending_.load(std::memory_order_acquire)) n += drain_remote();
  return n;
}

namespace {
// Out of line: most turns of a busy loop have no timer, and this would make run_once save registers.
[[gnu::noinline]] void fire_due_timers(detail::LoopCore& loop) {
  const std::int64_t end = loop.now_ns();
  while (!loop.timers_.empty() && loop.timers_.top()->when_ns_ <= end) loop.timers_.pop()->fire();
}
}  // namespace

void EventLoop::run_once() {
  if (!ready_.empty() || stopping_) [[likely]] {
    // A busy turn: poll without blocking. Such a poll does not announce sleep, so sleeping_ is false
    // already (poll_io clears it after every blocking poll) and is left alone.
    poller_->poll(0);
    if (remote_pending_.load(std::memory_order_acquire)) [[unlikely]]
      drain_remote();
  } else {
    wait_for_work();
  }

  if (virtual_time_) [[unlikely]]
    follow_real_time();
  if (!timers_.empty()) fire_due_timers(*this);  // the clock is read only when a timer could be due

  // Run what is ready now, up to the node queued last; what they make ready waits for the next turn. (A
  // node may be gone once run, so whether it was the last is decided before.)
  detail::ReadyNode* last = ready_.back();
  if (!last) return;
  for (;;) {
    detail::ReadyNode* n = ready_.pop();
    const bool was_last = n == last;
    n->run_ready();
    if (was_last) return;
  }
}

void EventLoop::wait_for_work() {
  std::int64_t timeout;
  if (!timers_.empty())
    timeout = std::max<std::int64_t>(0, timers_.top()->when_ns_ - now_ns());
  else
    timeout = -1;

  if (virtual_time_ && timeout != 0 && inhibit_auto_advance_ == 0) {
    // Nothing is ready: let I/O that is already there in, then jump the clock to the next timer.
    std::size_t n = poll_io(0);
    if (n == 0 && ready_.empty()) {
      // A timer due at kForeverNs (a delay beyond the clock's range: "never") is no reason to jump.
      if (!timers_.empty() && timers_.top()->when_ns_ < kForeverNs)
        virtual_now_ = std::max(virtual_now_, timers_.top()->when_ns_);
      else
        poll_io(-1);
    }
  } else {
    // (Under virtual time with a thread call or lookup in flight, the clock follows real time: a real wait.)
    poll_io(timeout);
  }
}

void EventLoop::follow_real_time() noexcept {
  const std::int64_t real = detail::monotonic_ns();
  if (inhibit_auto_advance_ > 0) virtual_now_ += real - real_stamp_ns_;
  real_stamp_ns_ = real;
}

void EventLoop::run_forever() {
  check_runnable();
  poller_->attach_thread();
  detail::LoopCore* prev = running_;
  running_ = this;
  running_thread_loop_ = true;
  thread_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  struct Restore {
    EventLoop* self;
    detail::LoopCore* prev;
    ~Restore() {
      self->thread_id_.store(std::thread::id(), std::memory_order_relaxed);
      self->running_thread_loop_ = false;
      self->stopping_ = false;
      running_ = prev;
    }
  } restore{this, prev};
  for (;;) {
    run_once();
    if (stopping_) break;
  }
}

void EventLoop::check_thread() const {
  const std::thread::id owner = thread_id_.load(std::memory_order_relaxed);
  if (owner != std::thread::id() && owner != std::this_thread::get_id())
    throw RuntimeError(
        "Non-thread-safe operation invoked on an event loop other than the current one "
        "(use call_soon_threadsafe)");
}

void EventLoop::run_until_done(detail::TaskStateBase& task) {
  // As asyncio's run_until_complete, the loop stops on the turn after the task finished, so what its last
  // step scheduled (a call_soon, its done callbacks) runs before this returns. The stop is cancelled when
  // this returns, so that a loop stopped for another reason in that turn does not stop its next run.
  struct StopWhenDone final : detail::DoneWatcher {
    EventLoop* loop = nullptr;
    Handle stop;
    void on_done(detail::TaskStateBase&) override {
      try {
        stop = loop->call_soon([l = loop] { l->stop(); });
      } catch (...) {
        loop->stop();
      }
    }
    ~StopWhenDone() { stop.cancel(); }
  } watcher;
  watcher.loop = this;
  if (task.done()) return;
  task.add_watcher(watcher);
  run_forever();
  if (!task.done()) throw RuntimeError("Event loop stopped before the task completed");
}

std::shared_ptr<void>& EventLoop::local(const void* key) {
  for (auto& [k, v] : locals_)
    if (k == key) return v;
  return locals_.emplace_back(key, nullptr).second;
}

void EventLoop::check_runnable() const {
  if (closed_ || closing_) throw RuntimeError("Event loop is closed");
  if (running_thread_loop_) throw RuntimeError("This event loop is already running");
  if (running_ && running_ != this)
    throw RuntimeError("Cannot run the event loop while another loop is running");
}

void EventLoop::cancel_all_tasks() {
  std::vector<TaskHandle<void>> to_cancel;
  tasks_.for_each([&](detail::TaskStateBase& t) { to_cancel.emplace_back(&t); });
  if (to_cancel.empty()) return;
  for (auto& t : to_cancel) t.cancel();
  for (auto& t : to_cancel) run_until_done(*t.state());
  for (auto& t : to_cancel) {
    detail::TaskStateBase* s = t.state();
    if (s->status_ == detail::TaskStateBase::Status::failed && !s->exc_retrieved_) {
      std::string what = "unknown exception";
      try {
        std::rethrow_exception(s->exception());
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      s->exc_retrieved_ = true;
      detail::log("unhandled exception during run() shutdown: task '" + s->name() + "'" +
                  detail::in_parens(s->created_at()) + ": " + what);
    }
  }
}

void EventLoop::shutdown_and_close() noexcept {
  try {
    cancel_all_tasks();
    // One more turn, as asyncio.run turns the loop again (shutdown_asyncgens, shutdown_default_executor)
    // before closing it: callbacks scheduled when main returned (a call_soon, main's done callbacks) run.
    stop();
    run_forever();
  } catch (const std::exception& e) {
    detail::log(std::string("error while cancelling leftover tasks: ") + e.what());
  } catch (...) {
  }
  join_helpers_while_running();
  close();
}

void EventLoop::close() {
  if (running_thread_loop_) throw RuntimeError("Cannot close a running event loop");
  if (closed_ || closing_) return;
  // Until the sweep below is over, work may still be scheduled (and is swept, never run): destructors run
  // there may call call_soon or create_task, which must not throw out of them. Then closed_ refuses it.
  closing_ = true;
  ActivateScope scope(*this);  // frames being destroyed may look at the loop
  if (!tasks_.empty() && debug_) {
    std::string out = "event loop closed with " + std::to_string(tasks_.size()) + " pending task(s):\n";
    tasks_.for_each([&](detail::TaskStateBase& t) { t.dump(out); });
    detail::log(out);
  }
  // Tasks go newest first, as a stack unwinds: a task's frame often holds what the tasks it created use (a
  // lock, a queue), and their destructors may still touch it (a waiter handed a lock passes it on).
  // Destroying what is left runs destructors, which may wake or cancel other tasks (a lock released, a
  // child cancelled), schedule callbacks or even create tasks. So every abandoned task stays alive (one
  // more reference) until the queues are swept, and the sweep goes round until nothing is left: a task
  // freed while still in the ready queue would be read there.
  // Cross-thread posts are dropped from now on, on the poster's side; those already queued go first, as
  // destroying them may schedule or create work that the sweep below then takes.
  std::vector<std::unique_ptr<detail::CallbackNode>> posted;
  {
    std::lock_guard<std::mutex> lock(remote_mu_);
    remote_closed_ = true;
    posted.swap(remote_);
  }
  posted.clear();
  std::vector<TaskHandle<void>> abandoned;
  for (;;) {
    while (!ready_.empty()) ready_.pop()->discard();
    if (detail::TaskStateBase* t = tasks_.back()) {
      abandoned.emplace_back(t);
      t->abandon();
      continue;
    }
    if (detail::TaskStateBase* f = futures_.back()) {  // (cancelled: "event loop closed")
      abandoned.emplace_back(f);
      f->abandon();
      continue;
    }
    if (timers_.empty()) break;
    timers_.pop()->discard();
  }
  closed_ = true;
  // Finished tasks still held let go of the loop: add_done_callback on one throws RuntimeError (even once a
  // new loop has this one's address: run() after run() makes them at the same place).
  while (detail::TaskStateBase* t = done_tasks_.pop_front()) t->loop_ = nullptr;
  abandoned.clear();  // (a task state's destructor touches neither the loop's queues nor its tasks)
  // Helper threads (to_thread's pool, DNS lookups) hold this loop's address to post their results: they
  // are joined before the loop can go, whether run() shut it down or it is closed directly (then here, on
  // the spot: a call that waits for the loop now waits for ever, so run() joins earlier, loop running).
  for (auto& join : detach_helpers()) join();
}

std::vector<std::function<void()>> EventLoop::detach_helpers() noexcept {
  std::vector<ShutdownHook> hooks;
  hooks.swap(shutdown_hooks_);
  std::vector<std::function<void()>> joins;
  for (auto& hook : hooks) {
    try {
      if (std::function<void()> join = hook()) joins.push_back(std::move(join));
    } catch (...) {
    }
  }
  return joins;
}

void EventLoop::join_helpers_while_running() noexcept {
  std::vector<std::function<void()>> joins = detach_helpers();
  if (joins.empty()) return;
  // As asyncio's shutdown_default_executor: the pools are joined on another thread while this loop keeps
  // running, so a call still running may use it (run_coroutine_threadsafe(...).get() from a to_thread
  // job hung run() for ever), and a second Ctrl-C is still heard. (The joiner inherits this thread's
  // signal mask, so it takes no signal the loop reads.)
  std::atomic<bool> done{false};
  try {
    std::thread joiner([this, &joins, &done] {
      for (auto& join : joins) {
        try {
          join();
        } catch (...) {
        }
      }
      done = true;
      call_soon_threadsafe([this] { stop(); });
    });
    try {
      while (!done) run_forever();  // (stopped by the joiner; a stop() of the program's own goes round again)
    } catch (const std::exception& e) {
      detail::log(std::string("error while joining the loop's helper threads: ") + e.what());
    } catch (...) {
    }
    joiner.join();
  } catch (...) {  // no thread to be had: join here
    for (auto& join : joins) {
      try {
        join();
      } catch (...) {
      }
    }
  }
}

bool detail::take_over_sigint(EventLoop& loop, std::function<bool()> on_sigint) {
  if (!loop.poller().on_main_thread()) return false;
  // Look, don't touch: setting and restoring with std::signal would drop a sigaction's flags and mask.
  struct sigaction prev {};
  if (::sigaction(SIGINT, nullptr, &prev) != 0 || prev.sa_handler != SIG_DFL)
    return false;  // the program handles (or ignores) SIGINT itself: leave it alone
  // The first Ctrl-C cancels the main task; a second one means "stop waiting for the cleanup": die of
  // SIGINT at once, as a second Ctrl-C under asyncio.run raises KeyboardInterrupt. So does a first one that
  // finds nothing to cancel (on_sigint returns false: main is done and the other tasks are cleaning up).
  // (The count is shared: the loop runs a copy of the handler each time.)
  auto count = std::make_shared<int>(0);
  loop.add_signal_handler(SIGINT, [f = std::move(on_sigint), count]() mutable {
    if (++*count == 1 && f()) return;
    std::fflush(nullptr);
    std::signal(SIGINT, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGINT);
    ::pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
    std::raise(SIGINT);
  });
  return true;
}

void detail::give_back_sigint(EventLoop& loop, bool interrupted) {
  loop.remove_signal_handler(SIGINT);
  if (interrupted) {
    // Dying of a signal skips exit()'s flush: what the cleanup printed must not be lost in stdio buffers.
    std::fflush(nullptr);
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}

void Sleep::describe(std::string& out) const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "sleep until %.3f", static_cast<double>(when_ns_) / 1e9);
  out += buf;
}

EventLoop& get_running_loop() { return EventLoop::from_core(detail::LoopCore::current_loop()); }

TaskHandle<void> current_task() {
  detail::LoopCore& loop = detail::LoopCore::current_loop();
  return TaskHandle<void>(loop.current_);
}

std::vector<TaskHandle<void>> all_tasks() {
  std::vector<TaskHandle<void>> out;
  detail::LoopCore::current_loop().tasks_.for_each([&](detail::TaskStateBase& t) { out.emplace_back(&t); });
  return out;
}

std::string dump_tasks() {
  std::string out;
  detail::LoopCore::current_loop().tasks_.for_each([&](detail::TaskStateBase& t) { t.dump(out); });
  return out;
}

}  // namespace corio
