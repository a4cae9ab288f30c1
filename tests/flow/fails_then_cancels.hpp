// For the tests of awaiters that must mark a failure retrieved when their task is cancelled before it
// resumed (wait_for, shield): inner work that fails and, in the same turn, has the awaiting task cancelled.
#pragma once

#include <chrono>
#include <stdexcept>

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

}  // namespace corio_test
