// Awaiting never recurses the native stack: a million nested or sequential awaits run in constant stack,
// also at -O0 and under sanitizers, where the compiler emits no tail calls.
#include <gtest/gtest.h>

#include <corio/core/errors.hpp>
#include <corio/core/run.hpp>
#include <corio/core/sleep.hpp>
#include <corio/core/task.hpp>
#include <corio/core/task_handle.hpp>

#include <chrono>
#include <cstdint>
#include <stdexcept>

using namespace std::chrono_literals;

namespace {

constexpr int kMillion = 1'000'000;

corio::Task<std::int64_t> nested(int depth) {
  if (depth == 0) co_return 0;
  co_return 1 + co_await nested(depth - 1);
}

// Same, but the innermost coroutine really suspends: the whole chain completes from a loop turn.
corio::Task<std::int64_t> nested_suspending(int depth) {
  if (depth == 0) {
    co_await corio::sleep(0s);
    co_return 0;
  }
  co_return 1 + co_await nested_suspending(depth - 1);
}

corio::Task<std::int64_t> nested_throwing(int depth) {
  if (depth == 0) throw std::runtime_error("bottom");
  co_return 1 + co_await nested_throwing(depth - 1);
}

corio::Task<int> one() { co_return 1; }

corio::Task<std::int64_t> link(corio::TaskHandle<std::int64_t> prev) {
  std::int64_t v = prev ? co_await prev : 0;
  co_return v + 1;
}

}  // namespace

TEST(Stack, MillionNestedAwaits) { EXPECT_EQ(corio::run(nested(kMillion)), kMillion); }

TEST(Stack, MillionNestedAwaitsCompletingFromALoopTurn) {
  EXPECT_EQ(corio::run(nested_suspending(kMillion)), kMillion);
}

TEST(Stack, MillionSequentialAwaits) {
  std::int64_t sum = corio::run([]() -> corio::Task<std::int64_t> {
    std::int64_t s = 0;
    for (int i = 0; i < kMillion; ++i) s += co_await one();
    co_return s;
  }());
  EXPECT_EQ(sum, kMillion);
}

TEST(Stack, ExceptionThroughHundredThousandNestedAwaits) {
  EXPECT_THROW(corio::run(nested_throwing(100'000)), std::runtime_error);
}

TEST(Stack, ChainOfHundredThousandTaskHandles) {
  constexpr int kTasks = 100'000;
  std::int64_t v = corio::run([]() -> corio::Task<std::int64_t> {
    corio::TaskHandle<std::int64_t> h;
    for (int i = 0; i < kTasks; ++i) h = corio::create_task(link(h));
    co_return co_await h;
  }());
  EXPECT_EQ(v, kTasks);
}
