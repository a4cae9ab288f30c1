// For the tests of awaiters that must mark a failure retrieved when their task is cancelled before it
// resumed (wait_for, shield): inner work that fails and, in the same turn, has the awaiting task cancelled.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>

#include "core/log_capture.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

namespace corio_test {

// The task to cancel (set by the awaiting task to current_task()).
inline corio::TaskHandle<void> victim;

// Fails; a task it starts cancels `victim` in the same turn, after the failure (its timer comes later).
inline corio::Task<int> fails_then_cancels_the_awaiter() {
  using namespace std::chrono_literals;
  auto canceller = []() -> corio::Task<> {
    co_await corio::sleep(1s);
    victim.cancel();
  };
  co_await corio::sleep(1s);
  (void)corio::create_task(canceller());
  co_await corio::sleep(1s);
  throw std::runtime_error("inner failed");
}

// Awaits await_over(fails_then_cancels_the_awaiter()) in a task cancelled right after that inner work
// failed: expects CancelledError, and no "never retrieved" report of the failure.
template <class F>
void expect_a_cancelled_awaiter_retrieves_the_failure(F await_over) {
  LogCapture logs;
  bool cancelled = false;
  corio::run(
      [](F& await_over, bool& cancelled) -> corio::Task<> {
        auto awaiter = [&]() -> corio::Task<> {
          victim = corio::current_task();
          try {
            co_await await_over(fails_then_cancels_the_awaiter());
          } catch (const corio::CancelledError&) {
            cancelled = true;
          }
        };
        co_await corio::create_task(awaiter());
        victim = {};
      }(await_over, cancelled),
      {.virtual_time = true});
  EXPECT_TRUE(cancelled);
  EXPECT_FALSE(logs.contains("never retrieved")) << logs.text();
}

}  // namespace corio_test
