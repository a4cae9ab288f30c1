// Shared pieces of the combinators: turning an argument into a scheduled child, and waiting on a set of
// children with asyncio's gather semantics.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "corio/core/detail/awaitable.hpp"
#include "corio/core/detail/runtime.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

namespace corio::detail {

template <class T>
using value_or_monostate = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

// The value type of a combinator argument: Task<T>, TaskHandle<T>, or any other awaitable.
template <class A>
struct child_value {};
template <class A>
requires(Awaitable<A> && !is_task_v<A> && !is_handle_v<A>) struct child_value<A> {
  using type = std::decay_t<await_result_t<A>>;
};
template <class T>
struct child_value<Task<T>> {
  using type = T;
};
template <class A>
requires is_handle_v<A>  // TaskHandle<T>, Future<T>
struct child_value<A> {
  using type = typename A::value_type;
};
template <class A>
using child_value_t = typename child_value<std::decay_t<A>>::type;

// The children a combinator has created while it sets up. If setting up fails (a bad argument: an empty
// handle, a moved-from or already-awaited Task), the destructor cancels them before their first step, so
// none of them runs unsupervised behind the exception.
class SetupGuard {
 public:
  SetupGuard() = default;
  SetupGuard(const SetupGuard&) = delete;
  SetupGuard& operator=(const SetupGuard&) = delete;
  ~SetupGuard() {
    // Pending tasks are kept alive by the loop's reference, so the pointers are valid.
    if (!released_)
      for (TaskStateBase* s : created_) s->cancel({});
  }
  template <class T>
  TaskHandle<T> adopt(TaskHandle<T> h) {
    created_.push_back(h.state());
    return h;
  }
  void release() noexcept { released_ = true; }

 private:
  std::vector<TaskStateBase*> created_;
  bool released_ = false;
};

// Children are created here, not where the user wrote the combinator: they record no creation site.
template <class T>
TaskHandle<T> to_handle(Task<T>&& t, SetupGuard& guard) {
  return guard.adopt(create_task(std::move(t), {}, SourceLoc{}));
}
// Any other awaitable (sleep(), shield(...)) runs as a child task that awaits it.
template <class A>
requires(Awaitable<A> && !is_task_v<std::decay_t<A>> &&
         !is_handle_v<std::decay_t<A>>) auto to_handle(A&& a, SetupGuard& guard) {
  return guard.adopt(create_task(await_as_task(std::move(a)), {}, SourceLoc{}));
}
// A handle a caller gave to the combinator `who` ("gather()"): InvalidStateError if empty, RuntimeError if
// its task is pending on another loop.
template <class T>
const TaskHandle<T>& check_handle(const TaskHandle<T>& h, const char* who) {
  if (!h) throw InvalidStateError(std::string(who) + ": empty TaskHandle");
  h.state()->check_same_loop();
  return h;
}

template <class T>
TaskHandle<T> to_handle(const TaskHandle<T>& h) {
  return check_handle(h, "combinator");
}
template <class T>
TaskHandle<T> to_handle(const TaskHandle<T>& h, SetupGuard&) {
  return to_handle(h);
}

// The result of a finished child, void mapped to monostate. `owned`: the combinator created the child from
// a Task, so nobody else can see it and the value is moved out; a TaskHandle the caller gave keeps its
// value (copied out, as `co_await handle` does) unless T cannot be copied.
template <class T>
value_or_monostate<T> child_result(const TaskHandle<T>& h, bool owned) {
  auto* s = state_cast<T>(h.state());
  s->exc_retrieved_ = true;
  if constexpr (std::is_void_v<T>) {
    s->get();
    return {};
  } else if constexpr (std::is_copy_constructible_v<T>) {
    if (!owned) return s->get();
    return s->take();
  } else {
    return s->take();
  }
}

// asyncio's gather and wait of tasks that are all done already still suspend once (their done callbacks run
// on the next turn), so a cancellation pending on the awaiting task is raised there; these combinators answer
// at once instead, and raise it themselves. (Awaiting one done task does not suspend in asyncio either.)
inline void raise_pending_cancel() {
  LoopCore* loop = LoopCore::running_;
  TaskStateBase* t = loop ? loop->current_ : nullptr;
  if (t && t->must_cancel_) {
    t->must_cancel_ = false;
    throw CancelledError(t->cancel_message());
  }
}

inline bool failed_or_cancelled(const TaskStateBase& t) noexcept {
  return t.status_ == TaskStateBase::Status::failed || t.status_ == TaskStateBase::Status::cancelled;
}

// Waits until every child is done. fail_fast (gather): the first child that fails (or is cancelled) makes
// the others be cancelled, and await_resume rethrows its exception once all have ended. An outside
// cancellation cancels every child, waits for all of them, then throws CancelledError.
// Resumed by the loop on the turn after the last child finished.
class ChildrenWaiter final : public Waiter {
 public:
  ChildrenWaiter(std::vector<TaskStateBase*> children, bool fail_fast)
      : children_(std::move(children)), fail_fast_(fail_fast) {}

  bool await_ready() {
    for (TaskStateBase* c : children_) {
      if (!c->done())
        ++remaining_;
      else
        note_failure(*c);
    }
    if (remaining_ > 0 && first_failed_) cancel_pending("");
    if (remaining_ == 0) {
      finish_all();
      if (!children_.empty()) raise_pending_cancel();
    }
    return remaining_ == 0;
  }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    watches_ = std::make_unique<Watch[]>(children_.size());
    for (std::size_t i = 0; i < children_.size(); ++i) {
      if (children_[i]->done()) continue;
      watches_[i].owner = this;
      children_[i]->add_watcher(watches_[i]);
    }
    suspend_on(h);
  }
  // Throws CancelledError (outside cancellation) or the first failure; returns when all succeeded.
  void await_resume() {
    throw_if_cancelled();
    if (outer_cancelled_) {
      // As asyncio's gather: after an outside cancellation, the first child to end with an error other than
      // CancelledError (one that turned its cancellation into another error) decides, unless a child ended
      // cancelled before it; else CancelledError.
      if (first_failed_ && failed_after_outer_cancel_ &&
          first_failed_->status_ == TaskStateBase::Status::failed)
        first_failed_->check_result();
      throw CancelledError(task_ ? task_->cancel_message() : std::string());
    }
    if (first_failed_) first_failed_->check_result();
  }

  // As asyncio's gather().cancel(): taken only if a child took it. With every child done already (their
  // watchers still being told: one of them, a TaskGroup's, is cancelling this task), it stays pending on
  // the awaiting task, which then gets CancelledError, not the gather's outcome.
  bool cancel() override {
    const bool was_cancelled = outer_cancelled_;
    outer_cancelled_ = true;
    bool taken = false;
    const std::string msg = task_->cancel_message();
    for (TaskStateBase* c : children_)
      if (!c->done() && c->cancel(msg)) taken = true;
    if (!taken) outer_cancelled_ = was_cancelled;
    return taken;
  }
  void describe(std::string& out) const override {
    out += (fail_fast_ ? "gather of " : "gather_settled of ") + std::to_string(children_.size()) + " (" +
           std::to_string(children_.size() - remaining_) + " done)";
  }

 private:
  struct Watch final : DoneWatcher {
    ChildrenWaiter* owner = nullptr;
    void on_done(TaskStateBase& t) override { owner->child_done(t); }
  };

  void note_failure(TaskStateBase& c) {
    if (fail_fast_ && !first_failed_ && failed_or_cancelled(c)) {
      first_failed_ = &c;
      failed_after_outer_cancel_ = outer_cancelled_;
    }
  }
  void child_done(TaskStateBase& c) {
    --remaining_;
    bool was_failing = first_failed_ != nullptr;
    note_failure(c);
    if (!was_failing && first_failed_ && remaining_ > 0 && !outer_cancelled_) cancel_pending("");
    if (remaining_ == 0) {
      finish_all();
      wake();
    }
  }
  void cancel_pending(const std::string& msg) {
    for (TaskStateBase* c : children_)
      if (!c->done()) c->cancel(msg);
  }
  // The combinator observes every child's outcome: none of them is "never retrieved".
  void finish_all() noexcept {
    for (TaskStateBase* c : children_) c->exc_retrieved_ = true;
  }

  std::vector<TaskStateBase*> children_;
  std::unique_ptr<Watch[]> watches_;
  std::size_t remaining_ = 0;
  bool fail_fast_;
  bool outer_cancelled_ = false;
  bool failed_after_outer_cancel_ = false;  // first_failed_ ended after the outside cancellation
  TaskStateBase* first_failed_ = nullptr;
};

template <class... Hs>
std::vector<TaskStateBase*> states_of(const Hs&... hs) {
  return {hs.state()...};
}
// Keeps the first of each task given more than once, in input order, and returns their states: asyncio's
// wait and as_completed work on a set.
template <class T>
std::vector<TaskStateBase*> keep_unique(std::vector<TaskHandle<T>>& tasks) {
  std::vector<TaskStateBase*> states;
  states.reserve(tasks.size());
  std::unordered_set<TaskStateBase*> seen;
  seen.reserve(tasks.size());
  std::size_t kept = 0;
  for (auto& h : tasks) {
    if (!seen.insert(h.state()).second) continue;
    states.push_back(h.state());
    if (&tasks[kept] != &h) tasks[kept] = std::move(h);
    ++kept;
  }
  tasks.erase(tasks.begin() + static_cast<std::ptrdiff_t>(kept), tasks.end());
  return states;
}

template <class T>
std::vector<TaskStateBase*> states_of_vector(const std::vector<TaskHandle<T>>& hs) {
  std::vector<TaskStateBase*> out;
  out.reserve(hs.size());
  for (const auto& h : hs) out.push_back(h.state());
  return out;
}

}  // namespace corio::detail
