// The runtime's shared machinery: promises' common part, the trampoline, scheduled-task state, waiters and
// the loop core. Everything here is private to corio (namespace detail); the public face is Task,
// TaskHandle and EventLoop.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#if __has_include(<source_location>)
#include <source_location>
#endif
#include <string>
#include <type_traits>
#include <utility>

#include "corio/core/detail/frame_allocator.hpp"
#include "corio/core/detail/intrusive_list.hpp"
#include "corio/core/detail/ready_queue.hpp"
#include "corio/core/detail/timer_heap.hpp"
#include "corio/core/errors.hpp"

namespace corio::detail {

class TaskStateBase;
class LoopCore;

// Whether a T fits the alignment coroutine frames and task states get (16 bytes: g++ 12 never asks for an
// over-aligned frame).
template <class T>
inline constexpr bool kFrameAligned = alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__;
template <>
inline constexpr bool kFrameAligned<void> = true;

// Where a coroutine was created: captured by the promise's constructor default argument, which the
// compiler evaluates in the coroutine itself. One pointer: std::source_location where the compiler has it
// (g++), else the function name alone (clang 14 with libstdc++ has no __builtin_source_location).
#if defined(__cpp_lib_source_location)
struct SourceLoc {
  std::source_location loc;
  static constexpr SourceLoc current(std::source_location l = std::source_location::current()) noexcept {
    return SourceLoc{l};
  }
  const char* function() const noexcept { return loc.function_name(); }
  const char* file() const noexcept { return loc.file_name(); }
  unsigned line() const noexcept { return loc.line(); }
  bool known() const noexcept { return loc.line() != 0; }  // a default-constructed SourceLoc is not
};
#else
struct SourceLoc {
  const char* fn = "";
  static constexpr SourceLoc current(const char* f = __builtin_FUNCTION()) noexcept { return SourceLoc{f}; }
  const char* function() const noexcept { return fn; }
  const char* file() const noexcept { return ""; }
  unsigned line() const noexcept { return 0; }
  bool known() const noexcept { return *fn != 0; }
};
#endif

// Constant-stack transfers. Awaiting a Task, or a Task finishing, never resumes a coroutine from inside
// another one's resume(): it leaves the next coroutine here and returns, and the loop's resume_chain()
// resumes it. That is symmetric transfer done by hand, so a million nested or sequential awaits run in
// constant native stack even where the compiler emits no tail call (-O0, sanitizers).
inline thread_local std::coroutine_handle<> tl_transfer = nullptr;

inline void resume_chain(std::coroutine_handle<> h) {
  h.resume();
  while (tl_transfer) {
    std::coroutine_handle<> next = tl_transfer;
    tl_transfer = nullptr;
    next.resume();
  }
}

// The part of every corio promise the runtime needs without knowing the result type. It sits in every
// coroutine frame, so it is kept small (40 bytes): a coroutine is either awaited (it has a parent) or the
// root of a scheduled task, never both, so the two links share a slot; the flags come last so that
// PromiseStorage<T> can put a small result in the tail padding.
struct PromiseBase : PooledAlloc {
  explicit PromiseBase(SourceLoc loc) noexcept : loc_(loc) {}

  std::coroutine_handle<> continuation_;  // who awaits this coroutine; null for a task's root

  // continuation_'s promise when it is a corio one (introspection); null for a root.
  PromiseBase* parent() const noexcept { return is_root_ ? nullptr : link_.parent; }
  // The scheduled task this coroutine is the root of, or null.
  TaskStateBase* root() const noexcept { return is_root_ ? link_.root : nullptr; }
  void set_parent(PromiseBase* p) noexcept { link_.parent = p; }  // not on a root (a root is started_)
  void set_root(TaskStateBase* t) noexcept {
    link_.root = t;
    is_root_ = true;
  }

  std::exception_ptr exc_;
  SourceLoc loc_;

 private:
  union Link {
    PromiseBase* parent;
    TaskStateBase* root;
  } link_{nullptr};  // which one: is_root_

 public:
  bool started_ = false;        // awaited (or scheduled) once; a second await is an error
  bool cancelled_exc_ = false;  // exc_ holds a CancelledError (only tracked for task roots)
  bool has_value_ = false;      // PromiseStorage<T> holds a value
 private:
  bool is_root_ = false;
};

// Something told, synchronously, when a task is done, in the order the watchers came: the awaits of the
// task (which schedule the awaiting task) and the combinators' bookkeeping, and the done callbacks of
// add_done_callback (which schedule the callback). One list for both, so that what was registered first runs
// first, as asyncio's done callbacks (an await is one of them there: Task.__wakeup).
struct DoneWatcher : HListNode {
  virtual void on_done(TaskStateBase& task) = 0;
  // The task lets go of its watchers without telling them (the loop closed under it, or it is destroyed):
  // a watcher the task owns (a done callback) frees itself; the others are only unlinked.
  virtual void dropped() noexcept {}

 protected:
  ~DoneWatcher() = default;
};

// A leaf a task is suspended at: a timer, a lock's waiter list, a child task, a socket. Invariant: while a
// task is suspended here, task_->waiter() == this; wake() clears it and schedules the task, so a waiter is
// woken at most once.
struct Waiter {
  TaskStateBase* task_ = nullptr;
  std::coroutine_handle<> handle_;
  PromiseBase* promise_ = nullptr;  // the awaiting coroutine's promise, for introspection

  Waiter() = default;
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // TaskHandle::cancel reached this waiter. Return true when the waiter took charge of the cancellation
  // (it will wake the task, which then sees CancelledError or whatever the waiter decides); false leaves
  // the task marked to throw CancelledError at its next resumption.
  virtual bool cancel() = 0;
  // The task this waiter waits for, when its cancel() is exactly "cancel that task with the awaiting
  // task's message" (co_await handle): TaskStateBase::cancel then passes the request on itself, in a loop,
  // so that a long chain of tasks awaiting one another does not recurse. Null for every other waiter.
  virtual TaskStateBase* cancel_target() const noexcept { return nullptr; }
  // One line for awaiting()/dump_tasks(): "sleep until 12.503", "task 'Task-4'".
  virtual void describe(std::string& out) const = 0;

  // Registers with the running task; call from await_suspend. If the task already has a cancellation
  // pending, cancel() runs at once, as asyncio cancels the future a task yields while _must_cancel is set.
  template <class P>
  void suspend_on(std::coroutine_handle<P> h);
  inline void wake() noexcept;
  // The task suspended here no longer reaches this waiter: the task is being destroyed while the waiter
  // lives on (in the frame of a generator the task was running, which outlives it), or the generator frame
  // holding the waiter is destroyed under a task that lives on (a nested generator destroyed mid-await: the
  // task resumes elsewhere, with RuntimeError). The waiter gives up what it waited for as its cancel() does
  // (a timer, a place in a wait list, an operation) and wakes nobody; it is never resumed. It leaves the
  // task as it was: no cancellation is marked on it. Called while the task still exists.
  virtual void orphan() noexcept;
  // Call first in await_resume: throws CancelledError if the task was cancelled while this waiter could no
  // longer take it (after being woken, before running), or a leaf's cancel() marked it so.
  inline void throw_if_cancelled();
  // Waiter::cancel() for the simple leaves: mark, wake.
  inline bool cancel_and_wake() noexcept;
  bool suspended() const noexcept;

 protected:
  // orphan()'s end: the task no longer names this waiter, nor this waiter the task.
  inline void detach() noexcept;
  inline ~Waiter();
};

// Work enqueued by call_soon / call_later. Reference-counted between the loop and the user's Handle.
struct CallbackNode : ReadyNode, TimerNode {
  LoopCore* loop_ = nullptr;
  std::uint32_t refs_ = 1;  // the loop's reference while queued or in the timer heap
  bool cancelled_ = false;
  bool running_ = false;  // invoke() is on the stack: its callable must live until it returns

  virtual ~CallbackNode() = default;
  virtual void invoke() = 0;
  // Destroys the callable (and what it captured) once the loop lets go of it: it ran, it was cancelled, or
  // the loop closed. Not at the node's end: a callable that holds the node's own Handle (an object keeping
  // the timer it scheduled, captured by the callback) would keep the node alive for ever, as asyncio's
  // Handle.cancel() drops the callback to avoid. Called with a reference held: what it destroys may release
  // another.
  virtual void clear() noexcept = 0;
  void run_ready() override;
  void discard() noexcept override {
    clear();
    release();
  }
  void fire() override;
  void add_ref() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }
};

template <class F>
struct FnCallback final : CallbackNode {
  explicit FnCallback(F f) : f_(std::in_place, std::move(f)) {}
  void invoke() override { (*f_)(); }
  void clear() noexcept override { f_.reset(); }
  std::optional<F> f_;
};

// The state of a task scheduled with create_task (asyncio.Task). Owned by references: the loop holds one
// while the task is pending, each TaskHandle one more. Loop-thread only, so the count is not atomic.
//
// Every task pays for this object, so it is packed to 76 bytes (a small result fits in the tail, 80 in all):
// the id and the flags share a word, slots that are never needed at the same time share storage (the
// waiter and the next step's coroutine; the root frame and the exception), the done-watchers' list head is
// one pointer, and what few tasks need sits in Extras, which then also holds that head.
class TaskStateBase : public ReadyNode, public ListNode, public PooledAlloc {
 public:
  enum class Status : std::uint8_t { pending, finished, failed, cancelled };

  // Takes ownership of `frame`, the root coroutine (suspended at its initial suspend point).
  TaskStateBase(LoopCore& loop, std::coroutine_handle<> frame) noexcept;
  virtual ~TaskStateBase();

  LoopCore* loop_;             // null once the task is done and its loop closed
  std::uint64_t id_ : 47 = 0;  // "Task-<id>"; 2^47 tasks outlast any process
  // A Future (create_future): no coroutine; set_result()/set_exception() end it at once, cancel() on the
  // loop's next turn (as a task cancelled before its first step).
  bool is_future_ : 1 = false;
  Status status_ : 8 = Status::pending;
  bool started_ : 1 = false;        // its first step ran (or it was cancelled before it)
  bool queued_ : 1 = false;         // in the ready queue
  bool must_cancel_ : 1 = false;    // throw CancelledError at the next resumption (asyncio's _must_cancel)
  bool exc_retrieved_ : 1 = false;  // somebody looked at the exception: no "never retrieved" report
  // A waiter took a cancellation and woke the task: its await_resume throws CancelledError. Unlike
  // must_cancel_, uncancel() does not withdraw it (asyncio: the future the task waited on is cancelled).
  bool cancel_woken_ : 1 = false;

 private:
  bool has_resume_ : 1 = false;  // which member of the union below is live
  bool has_extras_ : 1 = false;  // which member of the watchers_/extras_ union is live
  // cancel() is passing the request to the task's waiter: a cancel() re-entered from there (two tasks
  // awaiting each other) wakes the task with CancelledError, instead of recursing until the stack runs out.
  bool cancelling_ : 1 = false;
  // Invariant: while the task is suspended, waiter_ is the Waiter it is suspended at; while it is scheduled
  // after a wake-up, resume_ is the coroutine its next step resumes; before its first step, waiter_ is null.
  // While it runs, waiter() is null: either waiter_ is null or has_resume_ is still set from the wake-up (a
  // stale resume_ that nothing reads; run_ready leaves it rather than pay for clearing it on every step).
  // The two are never needed at once.
  union {
    Waiter* waiter_ = nullptr;
    void* resume_;  // a coroutine_handle's address
  };
  // While pending, frame_ is the root coroutine (null once destroyed); once done, exc_ is the exception
  // the task ended with (null if it returned a value). The frame is destroyed when the task ends, so the
  // two are never needed at once either.
  union {
    void* frame_;
    std::exception_ptr exc_;
  };

 public:
  struct UserCallback;
  // What most tasks never need, allocated on first use: a name, a cancel message and count, and in debug
  // mode where create_task was called (so a task costs nothing more outside debug mode).
  struct Extras {
    std::string name;  // what set_name() gave, if named (an empty name too, as asyncio's)
    std::string cancel_msg;
    SourceLoc created{};            // create_task's caller; known() only if recorded in debug mode
    int cancel_requests = 0;        // cancelling()
    bool named = false;             // set_name() was called; else the name is "Task-<id>"
    HListNode* watchers = nullptr;  // the task's done-watchers, once it has Extras
  };

 private:
  // The done-watchers (newest first) while the task has no Extras; then the Extras, which hold them.
  union {
    HListNode* watchers_ = nullptr;
    Extras* extras_;
  };

 public:
  std::uint32_t refs_ = 1;  // last, so that TaskState<T> can put a small value in the tail padding

  Extras* extras_if() const noexcept { return has_extras_ ? extras_ : nullptr; }
  Extras& extras() {
    if (!has_extras_) {
      auto* x = new Extras();
      x->watchers = watchers_;
      if (x->watchers) x->watchers->pprev_ = &x->watchers;
      extras_ = x;
      has_extras_ = true;
    }
    return *extras_;
  }
  // Registers a watcher, told synchronously when the task is done, in the order watchers came.
  void add_watcher(DoneWatcher& w) noexcept { w.link_front(watcher_head()); }

  // The waiter the task is suspended at, or null (see the invariant above).
  Waiter* waiter() const noexcept { return has_resume_ ? nullptr : waiter_; }
  void set_waiter(Waiter* w) noexcept {
    waiter_ = w;
    has_resume_ = false;
  }
  // Records where the next step resumes (the task is woken).
  void set_resume(std::coroutine_handle<> h) noexcept {
    resume_ = h.address();
    has_resume_ = true;
  }
  // The exception the task ended with; null while it is pending or if it returned a value.
  std::exception_ptr exception() const noexcept { return done() ? exc_ : nullptr; }
  int cancelling() const noexcept { return has_extras_ ? extras_->cancel_requests : 0; }

  void add_ref() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }
  bool done() const noexcept { return status_ != Status::pending; }
  // A future cancelled, ending on the loop's next turn: to its handles it is done and cancelled already.
  bool future_cancel_pending() const noexcept { return is_future_ && must_cancel_ && !done(); }
  // The task will see CancelledError at its next resumption.
  bool cancel_pending() const noexcept { return must_cancel_ || cancel_woken_; }
  std::string name() const;
  std::string cancel_message() const { return has_extras_ ? extras_->cancel_msg : std::string(); }
  void set_name(std::string name) {
    Extras& x = extras();
    x.name = std::move(name);
    x.named = true;
  }
  void set_created(SourceLoc where) { extras().created = where; }
  // "created at file:line" when the creation site was recorded (debug mode), else empty.
  std::string created_at() const;
  bool cancel(std::string msg);
  // Throws RuntimeError if the task is pending on another loop than the one running here: waiting for it
  // from here would wait for ever (that loop may not run again, or runs on another thread). As asyncio's
  // "got Future attached to a different loop".
  inline void check_same_loop() const;
  // cancel() is on the stack for this task, passing a request to its waiter: a cancel of it now came round
  // a cycle of tasks awaiting each other.
  bool cancel_in_progress() const noexcept { return cancelling_; }
  int uncancel() noexcept;
  // Throws what result() would for a task that did not finish with a value.
  void check_result() {
    if (status_ != Status::finished) [[unlikely]]
      check_result_slow();
  }
  std::string awaiting() const;
  void dump(std::string& out) const;
  void add_callback(std::unique_ptr<CallbackNode> cb);

  // Called by the root coroutine's final suspend: takes the result, destroys the frame, finishes.
  void complete(PromiseBase& root) noexcept;
  // The loop is closing while the task is pending: destroy the frame, mark it cancelled, drop the loop's
  // reference.
  void abandon() noexcept;
  // Ends a pending future (is_future_) with status `s` (its value already stored, for finished) and tells
  // its watchers.
  void resolve_future(Status s, std::exception_ptr e) noexcept {
    end(s, std::move(e));
    finish();
  }

  void run_ready() override;
  void discard() noexcept override { queued_ = false; }

 protected:
  virtual void take_value(PromiseBase& root) = 0;

 private:
  HListNode*& watcher_head() noexcept { return has_extras_ ? extras_->watchers : watchers_; }
  // Tells every watcher, oldest first; then the list is empty.
  void notify_watchers() noexcept;
  // Lets go of every watcher without telling it (done callbacks are deleted without running).
  void drop_watchers() noexcept;
  void free_extras() noexcept;
  [[noreturn]] void attached_elsewhere() const;
  void check_result_slow();  // check_result() of a task that did not return a value
  // "Task exception was never retrieved" (the destructor of a failed task nobody asked).
  [[gnu::noinline]] void report_never_retrieved() const noexcept;
  // run_ready's rare cases, out of line: the first step, and any step in debug mode (timed).
  [[gnu::noinline]] void run_first_or_debug();
  // Ends the task with status `s` and exception `e`, then destroys the root frame.
  void end(Status s, std::exception_ptr e) noexcept;
  void finish() noexcept;
};

// The loop's scheduling core, shared by EventLoop and the runtime's internals.
class LoopCore {
 public:
  ReadyQueue ready_;
  TimerHeap timers_;
  TaskStateBase* current_ = nullptr;  // the task whose step is running
  // Tells this loop from every other, also from one made later at the same address (run() makes each loop
  // on its stack): what must stay on the loop that made it (a stream) compares this, one word on a line the
  // loop reads every step anyway, rather than following a pointer to the backend.
  const std::uint64_t serial_ = new_serial();
  IntrusiveList<TaskStateBase> tasks_;    // every pending task
  IntrusiveList<TaskStateBase> futures_;  // every pending future (create_future): close() cancels them
  // Finished tasks still held (by a TaskHandle, a callback): close() makes them let go of the loop, so that
  // one that outlives it never reaches another loop that took its address.
  IntrusiveList<TaskStateBase> done_tasks_;
  std::uint64_t next_task_id_ = 1;
  bool debug_ = false;
  bool virtual_time_ = false;
  bool closed_ = false;  // EventLoop::close() ran: no new work is taken
  std::int64_t virtual_now_ = 0;
  std::int64_t slow_callback_ns_ = 100'000'000;
  int inhibit_auto_advance_ = 0;  // work outside the loop (threads) that virtual time must not jump past
  // Virtual time only: the real clock when the virtual one was last brought up to date. While work outside
  // the loop is in flight the virtual clock does not jump; it follows the real one instead (so a timer
  // such work waits for, or one that would cancel it, still comes due).
  std::int64_t real_stamp_ns_ = 0;

  // The loop running on this thread, if any. constinit, so that reading it (every await does) needs no TLS
  // wrapper call from other translation units.
  static constinit thread_local LoopCore* running_;

  std::int64_t now_ns() const noexcept;

  void schedule(TaskStateBase& t) noexcept {
    if (!t.queued_) {
      t.queued_ = true;
      ready_.push(t);
    }
  }
  void enqueue(CallbackNode& n) noexcept { ready_.push(n); }
  void add_timer(TimerNode& n, std::int64_t when_ns) {
    n.when_ns_ = when_ns;
    timers_.push(n);
  }
  void adopt(TaskStateBase& t) noexcept {
    t.id_ = next_task_id_++;
    tasks_.push_back(t);
    schedule(t);
  }
  // A future: listed (so that close() ends it), never scheduled; the loop's reference until it is done.
  void adopt_future(TaskStateBase& t) noexcept { futures_.push_back(t); }
  static LoopCore& current_loop();  // throws RuntimeError outside a running loop
  static std::uint64_t new_serial() noexcept;
  // The task whose step is running; throws RuntimeError outside one (out of line: the rare path).
  static TaskStateBase& current_task_or_throw() {
    LoopCore* loop = running_;
    if (loop && loop->current_) [[likely]]
      return *loop->current_;
    no_current_task();
  }
  [[noreturn]] static void no_current_task();
  [[noreturn]] static void throw_closed();  // RuntimeError("Event loop is closed")
};

// A done callback (add_done_callback) while the task is pending: a watcher owned by the task, which
// schedules the callback when told.
struct TaskStateBase::UserCallback final : DoneWatcher {
  explicit UserCallback(std::unique_ptr<CallbackNode> n) noexcept : node(std::move(n)) {}
  std::unique_ptr<CallbackNode> node;
  void on_done(TaskStateBase& task) override {
    task.loop_->enqueue(*node.release());
    delete this;
  }
  void dropped() noexcept override { delete this; }
};

// ---- inline definitions ----

inline void TaskStateBase::check_same_loop() const {
  if (!done() && loop_ != LoopCore::running_) [[unlikely]]
    attached_elsewhere();
}

template <class P>
void Waiter::suspend_on(std::coroutine_handle<P> h) {
  handle_ = h;
  if constexpr (std::is_base_of_v<PromiseBase, P>) promise_ = &h.promise();
  TaskStateBase& t = LoopCore::current_task_or_throw();
  task_ = &t;
  t.set_waiter(this);
  if (t.must_cancel_) {
    t.must_cancel_ = false;
    if (!cancel()) t.must_cancel_ = true;
  }
}

// handle_ is set while the waiter is suspended and cleared when it is woken: after that, task_ may name a
// task that is gone (a waiter alive in a generator's frame, handed on to another task), so it is not read.
inline bool Waiter::suspended() const noexcept { return handle_ && task_ && task_->waiter() == this; }

inline void Waiter::wake() noexcept {
  if (!handle_) [[unlikely]]
    return;  // orphaned (see orphan())
  TaskStateBase* t = task_;
  t->set_resume(std::exchange(handle_, nullptr));
  t->loop_->schedule(*t);
}

inline void Waiter::throw_if_cancelled() {
  if (task_ && task_->cancel_pending()) {
    task_->must_cancel_ = false;
    task_->cancel_woken_ = false;
    throw CancelledError(task_->cancel_message());
  }
}

inline bool Waiter::cancel_and_wake() noexcept {
  task_->cancel_woken_ = true;
  wake();
  return true;
}

inline void Waiter::orphan() noexcept {
  handle_ = nullptr;  // wake() does nothing from now on
  const bool was_woken = task_ && task_->cancel_woken_;
  (void)cancel();
  if (task_) task_->cancel_woken_ = was_woken;  // (cancel_and_wake marked it)
  detach();
}

inline void Waiter::detach() noexcept {
  if (task_ && task_->waiter() == this) task_->set_waiter(nullptr);
  task_ = nullptr;
}

inline Waiter::~Waiter() {
  if (suspended()) task_->set_waiter(nullptr);
}

}  // namespace corio::detail
