// wait: wait for a set of running tasks until a condition holds (asyncio.wait). Cancels nothing.
//
// Returns when the condition of `return_when` holds or the timeout passes, whichever is first: done and
// pending, each in input order (a task given twice is listed once, as asyncio's sets list it).
// first_exception returns when a task ends with an exception (not a cancellation) or all are done. Cancelling
// the awaiting task stops the waiting (CancelledError) and leaves the tasks running. An empty input throws
// std::invalid_argument, as asyncio raises ValueError. The awaiting task is resumed by the loop on the turn
// after the condition first held; a timeout of 0 waits one turn.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/detail/children.hpp"

namespace corio {

enum class ReturnWhen { first_completed, first_exception, all_completed };

template <class T>
struct WaitResult {
  std::vector<TaskHandle<T>> done;
  std::vector<TaskHandle<T>> pending;
};

namespace detail {

class WaitWaiter final : public Waiter, public TimerNode {
 public:
  WaitWaiter(std::vector<TaskStateBase*> tasks, ReturnWhen when, std::optional<std::int64_t> timeout_ns)
      : tasks_(std::move(tasks)), when_(when), timeout_ns_(timeout_ns) {
    retrieve_failures_done_before();
  }
  ~WaitWaiter() { stop_watching(); }

  // A timeout of 0 (or less) still waits for one turn: what was ready to finish in that turn is done. (Not
  // quite asyncio's: its call_later(0) wakes the waiter through a future, a turn later, so there a task
  // that ends on its second step is done too. A timer's waiter resumes here on the turn the timer expires,
  // as a sleep's does.)
  // Satisfied at once, a cancellation pending on the awaiting task is raised (raise_pending_cancel).
  bool await_ready() {
    if (!satisfied()) return false;
    raise_pending_cancel();
    return true;
  }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    loop_ = &LoopCore::current_loop();
    watches_ = std::make_unique<Watch[]>(tasks_.size());
    for (std::size_t i = 0; i < tasks_.size(); ++i) {
      if (tasks_[i]->done()) continue;
      watches_[i].owner = this;
      tasks_[i]->add_watcher(watches_[i]);
      ++remaining_;
    }
    if (timeout_ns_) {
      std::int64_t now = loop_->now_ns();
      constexpr std::int64_t kMax = INT64_MAX / 2;
      const std::int64_t t = std::max<std::int64_t>(*timeout_ns_, 0);
      loop_->add_timer(*this, t >= kMax - now ? kMax : now + t);
    }
    suspend_on(h);
  }
  void await_resume() { throw_if_cancelled(); }

  void fire() override {
    stop_watching();
    wake();
  }
  bool cancel() override {
    stop_watching();
    return cancel_and_wake();
  }
  void describe(std::string& out) const override {
    std::size_t done = 0;
    for (auto* t : tasks_) done += t->done();
    out += "wait for " + std::to_string(tasks_.size()) + " tasks (" + std::to_string(done) + " done)";
  }

 private:
  // Decides in O(1) per completion (a scan of every task each time made wait() quadratic).
  struct Watch final : DoneWatcher {
    WaitWaiter* owner = nullptr;
    void on_done(TaskStateBase& t) override {
      --owner->remaining_;
      // asyncio's _on_completion calls f.exception() for FIRST_EXCEPTION while tasks remain: retrieved.
      if (owner->when_ == ReturnWhen::first_exception && owner->remaining_ > 0 &&
          t.status_ == TaskStateBase::Status::failed)
        t.exc_retrieved_ = true;
      if (owner->remaining_ == 0 || owner->when_ == ReturnWhen::first_completed ||
          (owner->when_ == ReturnWhen::first_exception && t.status_ == TaskStateBase::Status::failed)) {
        owner->stop_watching();
        owner->wake();
      }
    }
  };

  // asyncio's _wait adds its completion callback to every task, and a done task's runs at once (call_soon),
  // counting it and, for FIRST_EXCEPTION while tasks remain, calling f.exception(): a task that had failed
  // before the wait is retrieved as one failing during it is (Watch::on_done), unless it is the last one
  // counted. Here the done tasks are counted first, in input order (asyncio's is its set's order).
  void retrieve_failures_done_before() noexcept {
    if (when_ != ReturnWhen::first_exception) return;
    std::size_t counter = tasks_.size();
    for (TaskStateBase* t : tasks_) {
      if (!t->done()) continue;
      --counter;
      if (counter > 0 && t->status_ == TaskStateBase::Status::failed) t->exc_retrieved_ = true;
    }
  }
  bool satisfied() const noexcept {
    std::size_t done = 0;
    for (const TaskStateBase* t : tasks_) {
      if (!t->done()) continue;
      ++done;
      if (when_ == ReturnWhen::first_completed) return true;
      if (when_ == ReturnWhen::first_exception && t->status_ == TaskStateBase::Status::failed) return true;
    }
    return done == tasks_.size();
  }
  void stop_watching() noexcept {
    if (watches_)
      for (std::size_t i = 0; i < tasks_.size(); ++i) watches_[i].unlink();
    if (scheduled()) loop_->timers_.remove(*this);
  }

  std::vector<TaskStateBase*> tasks_;
  ReturnWhen when_;
  std::optional<std::int64_t> timeout_ns_;
  LoopCore* loop_ = nullptr;
  std::unique_ptr<Watch[]> watches_;
  std::size_t remaining_ = 0;  // watched tasks not done yet
};

}  // namespace detail

template <class T>
Task<WaitResult<T>> wait(std::vector<TaskHandle<T>> tasks, ReturnWhen return_when = ReturnWhen::all_completed,
                         std::optional<std::chrono::nanoseconds> timeout = {}) {
  if (tasks.empty()) throw std::invalid_argument("wait(): the set of tasks is empty");
  for (const auto& h : tasks) detail::check_handle(h, "wait()");
  std::optional<std::int64_t> timeout_ns;
  if (timeout) timeout_ns = timeout->count();
  // A task given more than once is waited for, and listed, once: asyncio's wait works on a set.
  detail::WaitWaiter waiter(detail::keep_unique(tasks), return_when, timeout_ns);
  co_await waiter;
  WaitResult<T> out;
  for (auto& h : tasks) (h.state()->done() ? out.done : out.pending).push_back(std::move(h));
  co_return out;
}

}  // namespace corio
