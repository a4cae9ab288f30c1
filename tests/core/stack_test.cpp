// Awaiting never recurses the native stack: a million nested or sequential awaits run in constant stack,
// also at -O0 and under sanitizers, where the compiler emits no tail calls.
//
// Each test runs on a thread with a small fixed stack (kStackBytes), so an implementation that recursed
// would overflow it (a million frames of even 16 bytes is 16 MB) whatever `ulimit -s` allows the main
// thread.
#include <pthread.h>

#include <gtest/gtest.h>

#include <corio/core/errors.hpp>
#include <corio/core/run.hpp>
#include <corio/core/sleep.hpp>
#include <corio/core/task.hpp>
#include <corio/core/task_handle.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <utility>

using namespace std::chrono_literals;

namespace {

constexpr int kMillion = 1'000'000;

// Enough for the loop, the trampoline and one coroutine's frame on the native stack at -O0 with
// AddressSanitizer; far too little for a chain of nested resume() calls.
constexpr std::size_t kStackBytes = 256 * 1024;

struct SmallStackRun {
  std::size_t stack_bytes = 0;  // the stack size the thread really had
};

// Runs f() on a new thread with a kStackBytes stack and returns its result (rethrows its exception).
template <class F>
std::invoke_result_t<F&> on_small_stack(F f, SmallStackRun* info = nullptr) {
  using R = std::invoke_result_t<F&>;
  struct Job {
    F& f;
    std::optional<R> result;
    std::exception_ptr error;
    std::size_t stack_bytes = 0;
  } job{f, std::nullopt, nullptr};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  int rc = pthread_attr_setstacksize(&attr, kStackBytes);
  pthread_t thread;
  if (rc == 0)
    rc = pthread_create(
        &thread, &attr,
        [](void* p) -> void* {
          Job& j = *static_cast<Job*>(p);
          pthread_attr_t self;
          if (pthread_getattr_np(pthread_self(), &self) == 0) {
            pthread_attr_getstacksize(&self, &j.stack_bytes);
            pthread_attr_destroy(&self);
          }
          try {
            j.result.emplace(j.f());
          } catch (...) {
            j.error = std::current_exception();
          }
          return nullptr;
        },
        &job);
  pthread_attr_destroy(&attr);
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "small-stack thread");
  pthread_join(thread, nullptr);
  if (info) info->stack_bytes = job.stack_bytes;
  if (job.error) std::rethrow_exception(job.error);
  return std::move(*job.result);
}

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

// The first link (no previous task) sleeps for ever; every other awaits the previous one.
corio::Task<std::int64_t> link_or_sleep(corio::TaskHandle<std::int64_t> prev) {
  if (!prev) {
    co_await corio::sleep(24h);
    co_return 0;
  }
  co_return 1 + co_await prev;
}

}  // namespace

TEST(Stack, TestsRunOnASmallStack) {
  SmallStackRun info;
  EXPECT_EQ(on_small_stack([] { return 1; }, &info), 1);
  EXPECT_GT(info.stack_bytes, 0u);
  EXPECT_LE(info.stack_bytes, kStackBytes);
}

TEST(Stack, MillionNestedAwaits) {
  EXPECT_EQ(on_small_stack([] { return corio::run(nested(kMillion)); }), kMillion);
}

TEST(Stack, MillionNestedAwaitsCompletingFromALoopTurn) {
  EXPECT_EQ(on_small_stack([] { return corio::run(nested_suspending(kMillion)); }), kMillion);
}

TEST(Stack, MillionSequentialAwaits) {
  std::int64_t sum = on_small_stack([] {
    return corio::run([]() -> corio::Task<std::int64_t> {
      std::int64_t s = 0;
      for (int i = 0; i < kMillion; ++i) s += co_await one();
      co_return s;
    }());
  });
  EXPECT_EQ(sum, kMillion);
}

TEST(Stack, ExceptionThroughHundredThousandNestedAwaits) {
  try {
    on_small_stack([] { return corio::run(nested_throwing(100'000)); });
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "bottom");  // (not a corio error, nor the small-stack thread's system_error)
  }
}

TEST(Stack, ChainOfHundredThousandTaskHandles) {
  constexpr int kTasks = 100'000;
  std::int64_t v = on_small_stack([] {
    return corio::run([]() -> corio::Task<std::int64_t> {
      corio::TaskHandle<std::int64_t> h;
      for (int i = 0; i < kTasks; ++i) h = corio::create_task(link(h));
      co_return co_await h;
    }());
  });
  EXPECT_EQ(v, kTasks);
}

// Cancelling the last of 100,000 tasks, each awaiting the one before, passes the request down to the first
// in constant stack (it recursed once per task and overflowed); the whole chain then ends cancelled.
TEST(Stack, CancellingTheHeadOfAChainOfHundredThousandTaskHandlesReachesTheBottom) {
  constexpr int kTasks = 100'000;
  const bool ok = on_small_stack([] {
    return corio::run([]() -> corio::Task<bool> {
      corio::TaskHandle<std::int64_t> bottom;
      corio::TaskHandle<std::int64_t> head;
      for (int i = 0; i < kTasks; ++i) {
        head = corio::create_task(link_or_sleep(head));
        if (i == 0) bottom = head;
      }
      while (head.awaiting().find("task") == std::string::npos) co_await corio::sleep(0s);
      EXPECT_NE(bottom.awaiting().find("sleep"), std::string::npos);
      EXPECT_TRUE(head.cancel("stop"));
      bool head_cancelled = false;
      try {
        (void)co_await head;
      } catch (const corio::CancelledError&) {
        head_cancelled = true;
      }
      co_return head_cancelled&& head.cancelled() && bottom.cancelled() && bottom.cancelling() == 1;
    }());
  });
  EXPECT_TRUE(ok);
}
