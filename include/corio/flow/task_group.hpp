// TaskGroup / task_group: structured concurrency (asyncio.TaskGroup).
//
//   co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Task<> {
//     tg.create_task(fetch(a));
//     tg.create_task(fetch(b));
//     co_return;
//   });
//
// The body runs inline in the awaiting task; task_group returns once the body and every child have ended.
// The first child that fails cancels the other children and the body; then task_group throws an
// ExceptionGroup whose exceptions() hold every child failure and the body's own failure (never a
// CancelledError caused by the group's own cancelling). A cancellation from outside cancels body and
// children, waits for them, and propagates as CancelledError (an ExceptionGroup if children also failed).
// task_group keeps the body callable alive until every child has finished, so a capturing lambda is fine.
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/core/detail/runtime.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/detail/children.hpp"

namespace corio {

class TaskGroup {
 public:
  TaskGroup() : parent_(current_task()) {}
  ~TaskGroup() {
    while (Watch* w = watches_.pop_front()) delete w;  // (only if destroyed with children running)
  }
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // Schedules `task` as a child of the group. Throws RuntimeError once the group is finished (its body
  // returned and no child is left running, as asyncio's TaskGroup) or shutting down (a child failed, or it
  // was cancelled). While the body is done but children still run, children may still add siblings.
  // `where`: the caller's location, kept in debug mode as corio::create_task does.
  template <class T>
  TaskHandle<T> create_task(Task<T> task, std::string name = {},
                            detail::SourceLoc where = detail::SourceLoc::current()) {
    if (finished_ || (exiting_ && pending_ == 0)) throw RuntimeError("TaskGroup is finished");
    if (aborting_) throw RuntimeError("TaskGroup is shutting down");
    TaskHandle<T> h = corio::create_task(std::move(task), std::move(name), where);
    auto* w = new Watch();
    w->group = this;
    w->child = TaskHandle<void>(h);
    h.state()->add_watcher(*w);
    watches_.push_back(*w);
    ++pending_;
    return h;
  }

  // Internal: ends the group after its body; see task_group.
  Task<> join(std::exception_ptr body_exc, bool body_cancelled);

 private:
  // One per running child (the group lets go of a child once it is done, as asyncio's discards it: a
  // long-lived group, a server's say, does not keep every finished child).
  struct Watch final : detail::DoneWatcher, detail::ListNode {
    using detail::ListNode::unlink;  // (watches_'s; the task's list unlinks it as a DoneWatcher)
    TaskGroup* group = nullptr;
    TaskHandle<void> child;
    void on_done(detail::TaskStateBase& t) override { group->child_done(*this, t); }  // (deletes this)
  };
  struct JoinAwaiter final : detail::Waiter {
    TaskGroup* group;
    explicit JoinAwaiter(TaskGroup* g) : group(g) {}
    bool await_ready() const noexcept { return group->pending_ == 0; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
      group->joiner_ = this;
      suspend_on(h);
    }
    void await_resume() {
      group->joiner_ = nullptr;
      throw_if_cancelled();
    }
    bool cancel() override { return cancel_and_wake(); }
    void describe(std::string& out) const override {
      out += "task_group (" + std::to_string(group->pending_) + " children running)";
    }
  };

  void child_done(Watch& w, detail::TaskStateBase& t) {
    delete &w;  // (and its handle; the caller's handles keep the task)
    --pending_;
    if (t.status_ == detail::TaskStateBase::Status::failed) {
      t.exc_retrieved_ = true;
      errors_.push_back(t.exception());
      if (!aborting_ && !parent_cancel_requested_) {
        abort();
        parent_cancel_requested_ = true;
        parent_.cancel();
      }
    }
    if (pending_ == 0 && joiner_ && joiner_->suspended()) joiner_->wake();
  }
  void abort() {
    aborting_ = true;
    std::vector<TaskHandle<void>> running;  // (a copy: cancelling may run code that changes watches_)
    watches_.for_each([&](Watch& w) { running.push_back(w.child); });
    for (auto& c : running)
      if (!c.done()) c.cancel();
  }

  TaskHandle<void> parent_;
  detail::IntrusiveList<Watch> watches_;  // the children still running, in the order they were made
  std::vector<std::exception_ptr> errors_;
  std::size_t pending_ = 0;
  JoinAwaiter* joiner_ = nullptr;
  bool aborting_ = false;
  bool exiting_ = false;  // the body has ended: join() runs
  bool finished_ = false;
  bool parent_cancel_requested_ = false;
};

inline Task<> TaskGroup::join(std::exception_ptr body_exc, bool body_cancelled) {
  bool propagate_cancel = body_cancelled;
  exiting_ = true;
  if (body_exc && !aborting_) abort();
  while (pending_ > 0) {
    bool cancelled = false;
    try {
      co_await JoinAwaiter(this);
    } catch (const CancelledError&) {
      cancelled = true;
    }
    if (cancelled && !aborting_) {
      // Our parent task is being cancelled from outside.
      propagate_cancel = true;
      abort();
    }
  }
  finished_ = true;
  if (parent_cancel_requested_ && parent_.uncancel() == 0) propagate_cancel = false;
  // The body's failure joins the children's, unless it is one of them rethrown (the body awaited the
  // failed child, or read its result): the same exception object is listed once.
  if (body_exc && !body_cancelled) {
    bool seen = false;
    for (const auto& e : errors_) seen = seen || e == body_exc;
    if (!seen) errors_.push_back(body_exc);
  }
  if (!errors_.empty()) {
    // A cancellation from outside stays pending on the parent (asyncio 3.13): uncancel and cancel again,
    // which keeps cancelling() as it was, so the next await after catching the group raises
    // CancelledError.
    if (parent_.cancelling() > 0) {
      parent_.uncancel();
      parent_.cancel(parent_.state()->cancel_message());
    }
    throw ExceptionGroup("unhandled errors in a TaskGroup", std::move(errors_));
  }
  if (propagate_cancel) throw CancelledError(parent_.state()->cancel_message());
}

namespace detail {
template <class F>
using body_task_t = std::invoke_result_t<F&, TaskGroup&>;
template <class F>
using body_value_t = typename body_task_t<F>::value_type;
}  // namespace detail

// Runs body(group) and waits for it and every child; see above. Returns the body's value.
template <class F>
requires std::is_invocable_v<F&, TaskGroup&> Task<detail::body_value_t<F>> task_group(F body) {
  using R = detail::body_value_t<F>;
  TaskGroup group;
  std::exception_ptr body_exc;
  bool body_cancelled = false;
  std::optional<detail::value_or_monostate<R>> result;
  try {
    if constexpr (std::is_void_v<R>) {
      co_await body(group);
      result.emplace();
    } else {
      result.emplace(co_await body(group));
    }
  } catch (const CancelledError&) {
    body_exc = std::current_exception();
    body_cancelled = true;
  } catch (...) {
    body_exc = std::current_exception();
  }
  co_await group.join(body_exc, body_cancelled);
  // The body can only lack a value here if it was cancelled and swallowed nothing else: stay cancelled.
  if (!result) throw CancelledError(current_task().state()->cancel_message());
  if constexpr (!std::is_void_v<R>) co_return std::move(*result);
}

}  // namespace corio
