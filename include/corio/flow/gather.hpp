// gather / gather_settled: run several awaitables concurrently and collect their results in order.
//
// Arguments are Task<T> or any other awaitable (scheduled as child tasks when the gather starts) or
// TaskHandle<T> (already running). A handle keeps its value (copied out, as `co_await handle`), unless T
// cannot be copied: then the gather moves it out, and the same handle given twice gives its second place a
// moved-from value (asyncio hands the same object to both).
// Structured, unlike asyncio (CPython #90908): on the first failure gather cancels the other children,
// waits until every one of them has ended, then rethrows that failure — it never leaves a child running
// behind it. A child that is cancelled counts as a failure (gather throws CancelledError), as in asyncio.
// Cancelling the task that awaits a gather cancels every child, waits for them, then throws CancelledError;
// but if the first child to end after that turned its cancellation into another error, that error, as
// asyncio's gather (gather_settled: CancelledError, as asyncio's return_exceptions=True).
// gather_settled (asyncio's return_exceptions=True) waits for all and returns each Outcome.
//
// The awaiting task is resumed by the loop on the turn after the last child ended.
#pragma once

#include <exception>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/detail/children.hpp"

namespace corio {

// A child's outcome in gather_settled: a value (monostate for void) or the exception it ended with
// (CancelledError included).
template <class T>
class Outcome {
 public:
  using value_type = detail::value_or_monostate<T>;
  explicit Outcome(value_type v) : value_(std::move(v)) {}
  explicit Outcome(std::exception_ptr e) : error_(std::move(e)) {}

  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return has_value(); }
  // The value; rethrows the exception when there is one.
  decltype(auto) value() & {
    if (error_) std::rethrow_exception(error_);
    if constexpr (std::is_void_v<T>)
      return;
    else
      return (*value_);
  }
  decltype(auto) value() && {
    if (error_) std::rethrow_exception(error_);
    if constexpr (std::is_void_v<T>)
      return;
    else
      return std::move(*value_);
  }
  // The exception, or null when there is a value.
  std::exception_ptr error() const noexcept { return error_; }

 private:
  std::optional<value_type> value_;
  std::exception_ptr error_;
};

namespace detail {
// Arguments given as Task<T> (or other awaitables) are owned (their values are moved out); TaskHandles
// keep theirs.
template <class... As, class... Hs, std::size_t... I>
auto gather_results(std::tuple<Hs...>& hs, std::index_sequence<I...>) {
  return std::tuple<value_or_monostate<typename Hs::value_type>...>(
      child_result(std::get<I>(hs), !is_handle_v<std::decay_t<As>>)...);
}

template <class T>
std::vector<TaskHandle<T>> to_handles(std::vector<Task<T>>&& tasks) {
  SetupGuard guard;
  std::vector<TaskHandle<T>> hs;
  hs.reserve(tasks.size());
  for (auto& t : tasks) hs.push_back(to_handle(std::move(t), guard));
  guard.release();
  return hs;
}

// owned: the handles were created from Tasks by the combinator (values are moved out).
template <class T>
Task<std::vector<value_or_monostate<T>>> gather_handles(std::vector<TaskHandle<T>> hs, bool owned) {
  ChildrenWaiter waiter(states_of_vector(hs), /*fail_fast=*/true);
  co_await waiter;
  std::vector<value_or_monostate<T>> out;
  out.reserve(hs.size());
  for (auto& h : hs) out.push_back(child_result(h, owned));
  co_return out;
}

template <class T>
Task<std::vector<Outcome<T>>> gather_settled_handles(std::vector<TaskHandle<T>> hs, bool owned) {
  ChildrenWaiter waiter(states_of_vector(hs), /*fail_fast=*/false);
  co_await waiter;
  std::vector<Outcome<T>> out;
  out.reserve(hs.size());
  for (auto& h : hs) {
    try {
      out.emplace_back(child_result(h, owned));
    } catch (...) {
      out.emplace_back(std::current_exception());
    }
  }
  co_return out;
}
}  // namespace detail

// gather(a, b, ...) -> std::tuple of the results in argument order (void -> std::monostate).
// gather() with no arguments returns an empty tuple without suspending (asyncio's gather() -> []).
template <class... As>
Task<std::tuple<detail::value_or_monostate<detail::child_value_t<As>>...>> gather(As... args) {
  // Braced initialisation evaluates left to right: children are scheduled in argument order.
  // A bad argument cancels the children already created (before their first step) and throws.
  detail::SetupGuard guard;
  std::tuple<TaskHandle<detail::child_value_t<As>>...> hs{detail::to_handle(std::move(args), guard)...};
  guard.release();
  detail::ChildrenWaiter waiter(std::apply([](auto&... h) { return detail::states_of(h...); }, hs),
                                /*fail_fast=*/true);
  co_await waiter;
  co_return detail::gather_results<As...>(hs, std::index_sequence_for<As...>{});
}

// gather(vector) -> std::vector of the results in order (void -> std::monostate); empty in, empty out.
template <class T>
Task<std::vector<detail::value_or_monostate<T>>> gather(std::vector<Task<T>> tasks) {
  co_return co_await detail::gather_handles(detail::to_handles(std::move(tasks)), /*owned=*/true);
}
template <class T>
Task<std::vector<detail::value_or_monostate<T>>> gather(std::vector<TaskHandle<T>> handles) {
  for (const auto& h : handles) detail::check_handle(h, "gather()");
  co_return co_await detail::gather_handles(std::move(handles), /*owned=*/false);
}

// gather_settled(vector) -> every child's Outcome, in order; never throws a child's failure.
template <class T>
Task<std::vector<Outcome<T>>> gather_settled(std::vector<Task<T>> tasks) {
  co_return co_await detail::gather_settled_handles(detail::to_handles(std::move(tasks)), /*owned=*/true);
}
template <class T>
Task<std::vector<Outcome<T>>> gather_settled(std::vector<TaskHandle<T>> handles) {
  for (const auto& h : handles) detail::check_handle(h, "gather()");
  co_return co_await detail::gather_settled_handles(std::move(handles), /*owned=*/false);
}

}  // namespace corio
