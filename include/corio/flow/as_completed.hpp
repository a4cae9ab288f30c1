// as_completed: yield running tasks in the order they finish (asyncio.as_completed). Cancels nothing.
//
//   auto gen = corio::as_completed(handles);
//   while (auto h = co_await gen.next()) use(co_await *h);
//
// Tasks already done come first, in input order; a task given twice is yielded once. Each next() suspends the
// consumer until one more task is done; the loop resumes it on the turn after that. Cancelling the consumer
// stops the waiting only: that next() throws CancelledError, and the next next() goes on with the tasks left.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "corio/core/async_generator.hpp"
#include "corio/core/detail/runtime.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/detail/children.hpp"

namespace corio {
namespace detail {

// Collects the indices of tasks as they finish; next() waits for one more.
class CompletionQueue {
 public:
  explicit CompletionQueue(const std::vector<TaskStateBase*>& tasks) : watches_(new Watch[tasks.size()]) {
    order_.reserve(tasks.size());
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      if (tasks[i]->done()) {
        order_.push_back(i);
        continue;
      }
      watches_[i].owner = this;
      watches_[i].index = i;
      tasks[i]->add_watcher(watches_[i]);
    }
  }

  struct Next final : Waiter {
    CompletionQueue* q;
    explicit Next(CompletionQueue* queue) : q(queue) {}
    bool await_ready() const noexcept { return q->consumed_ < q->order_.size(); }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
      q->waiter_ = this;
      suspend_on(h);
    }
    std::size_t await_resume() {
      q->waiter_ = nullptr;
      throw_if_cancelled();
      return q->order_[q->consumed_++];
    }
    bool cancel() override { return cancel_and_wake(); }
    void describe(std::string& out) const override {
      out += "as_completed (" + std::to_string(q->order_.size()) + " done)";
    }
  };
  Next next() noexcept { return Next(this); }

 private:
  struct Watch final : DoneWatcher {
    CompletionQueue* owner = nullptr;
    std::size_t index = 0;
    void on_done(TaskStateBase&) override {
      owner->order_.push_back(index);
      if (owner->waiter_ && owner->waiter_->suspended()) owner->waiter_->wake();
    }
  };

  std::unique_ptr<Watch[]> watches_;
  std::vector<std::size_t> order_;
  std::size_t consumed_ = 0;
  Next* waiter_ = nullptr;
};

}  // namespace detail

template <class T>
AsyncGenerator<TaskHandle<T>> as_completed(std::vector<TaskHandle<T>> tasks) {
  for (const auto& h : tasks) detail::check_handle(h, "as_completed()");
  // A task given more than once is yielded once, as asyncio's as_completed works on a set.
  std::vector<detail::TaskStateBase*> states = detail::keep_unique(tasks);
  detail::CompletionQueue queue(states);
  for (std::size_t n = 0; n < tasks.size(); ++n) {
    std::size_t i = 0;
    for (;;) {
      // A cancelled next() throws CancelledError to the consumer, and the iteration goes on (asyncio's
      // as_completed keeps yielding): the error is passed out through the generator, not thrown in it.
      std::exception_ptr cancelled;
      try {
        i = co_await queue.next();
        break;
      } catch (const CancelledError&) {
        cancelled = std::current_exception();
      }
      // (Named, not a temporary in the co_yield: g++ 12 destroys such a temporary's member once more when the
      // frame is destroyed suspended here, freeing the CancelledError the consumer holds.)
      detail::GeneratorError passed{cancelled};
      co_yield std::move(passed);
    }
    co_yield tasks[i];
  }
}

}  // namespace corio
