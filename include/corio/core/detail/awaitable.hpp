// What can be awaited, and with what result: lets the combinators and create_task take any awaitable
// (sleep(), shield(), a user's own awaiter), not only Task and TaskHandle.
#pragma once

#include <concepts>
#include <type_traits>
#include <utility>

#include "corio/core/task.hpp"

namespace corio::detail {

template <class A>
concept HasMemberCoAwait = requires(A&& a) {
  static_cast<A&&>(a).operator co_await();
};

template <class A>
decltype(auto) get_awaiter(A&& a) {
  if constexpr (HasMemberCoAwait<A>)
    return static_cast<A&&>(a).operator co_await();
  else
    return static_cast<A&&>(a);
}

template <class A>
using awaiter_t = decltype(get_awaiter(std::declval<A>()));

template <class A>
concept Awaitable = requires(std::remove_reference_t<awaiter_t<A>>& w) {
  { w.await_ready() } -> std::convertible_to<bool>;
  w.await_resume();
};

template <class A>
using await_result_t = decltype(std::declval<std::remove_reference_t<awaiter_t<A>>&>().await_resume());

template <class T>
inline constexpr bool is_task_v = false;
template <class T>
inline constexpr bool is_task_v<Task<T>> = true;

// A Task that awaits `a` (so it can be scheduled with create_task). The awaitable is moved into the frame.
template <class A>
Task<std::decay_t<await_result_t<A>>> await_as_task(A a) {
  co_return co_await std::move(a);
}

}  // namespace corio::detail
