// Debug mode: never-awaited coroutines, exceptions never retrieved, slow steps, tasks pending at close.
#include <gtest/gtest.h>

#include <corio/core/errors.hpp>
#include <corio/core/event_loop.hpp>
#include <corio/core/log.hpp>
#include <corio/core/run.hpp>
#include <corio/core/sleep.hpp>
#include <corio/core/task.hpp>
#include <corio/core/task_handle.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include "log_capture.hpp"

using namespace std::chrono_literals;
using corio_test::LogCapture;

namespace {

corio::Task<int> forgotten_coroutine_fn() { co_return 1; }

corio::Task<int> fails_with(std::string what) {
  co_await corio::sleep(0s);
  throw std::runtime_error(what);
  co_return 0;
}

corio::Task<> sleeps_an_hour() { co_await corio::sleep(1h); }

corio::Task<> two_steps() {
  co_await corio::sleep(0s);
  co_return;
}

}  // namespace

TEST(Debug, NeverAwaitedIsReportedWithTheFunctionName) {
  LogCapture logs;
  corio::run(
      []() -> corio::Task<> {
        { corio::Task<int> t = forgotten_coroutine_fn(); }
        co_return;
      }(),
      {.debug = true});
  EXPECT_EQ(logs.count("never awaited"), 1) << logs.text();
  EXPECT_TRUE(logs.contains("forgotten_coroutine_fn")) << logs.text();
}

TEST(Debug, NeverAwaitedAfterSetDebug) {
  LogCapture logs;
  corio::run([]() -> corio::Task<> {
    corio::get_running_loop().set_debug(true);
    { corio::Task<int> t = forgotten_coroutine_fn(); }
    co_return;
  }());
  EXPECT_EQ(logs.count("never awaited"), 1) << logs.text();
  EXPECT_TRUE(logs.contains("forgotten_coroutine_fn")) << logs.text();
}

TEST(Debug, NeverAwaitedIsSilentOutsideDebugMode) {
  LogCapture logs;
  corio::run([]() -> corio::Task<> {
    corio::get_running_loop().set_debug(false);  // also when CORIO_DEBUG=1 is in the environment
    { corio::Task<int> t = forgotten_coroutine_fn(); }
    co_return;
  }());
  EXPECT_FALSE(logs.contains("never awaited")) << logs.text();
}

TEST(Debug, AwaitedTaskIsNotReported) {
  LogCapture logs;
  int v = corio::run([]() -> corio::Task<int> { co_return co_await forgotten_coroutine_fn(); }(),
                     {.debug = true});
  EXPECT_EQ(v, 1);
  EXPECT_FALSE(logs.contains("never awaited")) << logs.text();
}

TEST(Debug, ExceptionNeverRetrievedIsLoggedEvenWithoutDebug) {
  LogCapture logs;
  corio::run([]() -> corio::Task<> {
    corio::get_running_loop().set_debug(false);
    (void)corio::create_task(fails_with("lost failure"), "forgetful");
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
  }());
  EXPECT_EQ(logs.count("Task exception was never retrieved"), 1) << logs.text();
  EXPECT_TRUE(logs.contains("lost failure")) << logs.text();
  EXPECT_TRUE(logs.contains("forgetful")) << logs.text();
}

TEST(Debug, RetrievedExceptionIsNotLogged) {
  LogCapture logs;
  corio::run([]() -> corio::Task<> {
    auto awaited = corio::create_task(fails_with("awaited"));
    auto by_result = corio::create_task(fails_with("by result"));
    auto by_exception = corio::create_task(fails_with("by exception"));
    try {
      co_await awaited;
    } catch (const std::runtime_error&) {
    }
    co_await corio::sleep(0s);
    try {
      (void)by_result.result();
    } catch (const std::runtime_error&) {
    }
    EXPECT_TRUE(by_exception.exception() != nullptr);
  }());
  EXPECT_FALSE(logs.contains("never retrieved")) << logs.text();
}

TEST(Debug, SlowStepIsLoggedWithTheTaskName) {
  LogCapture logs;
  corio::run(
      []() -> corio::Task<> {
        corio::get_running_loop().set_slow_callback_duration(0.0);  // every step counts as slow
        EXPECT_EQ(corio::get_running_loop().slow_callback_duration(), 0.0);
        auto h = corio::create_task(two_steps(), "slowpoke");
        co_await h;
      }(),
      {.debug = true});
  EXPECT_GE(logs.count("Executing task 'slowpoke'"), 2) << logs.text();  // one line per step
}

TEST(Debug, SlowCallbackIsLogged) {
  LogCapture logs;
  corio::run(
      []() -> corio::Task<> {
        corio::EventLoop& loop = corio::get_running_loop();
        loop.set_slow_callback_duration(0.0);
        loop.call_soon([] {});
        co_await corio::sleep(0s);
      }(),
      {.debug = true});
  EXPECT_TRUE(logs.contains("Executing callback")) << logs.text();
}

TEST(Debug, SlowStepsAreNotLoggedOutsideDebugMode) {
  LogCapture logs;
  corio::run([]() -> corio::Task<> {
    corio::EventLoop& loop = corio::get_running_loop();
    loop.set_debug(false);
    loop.set_slow_callback_duration(0.0);
    loop.call_soon([] {});
    co_await corio::create_task(two_steps(), "quiet");
  }());
  EXPECT_FALSE(logs.contains("Executing")) << logs.text();
}

TEST(Debug, TasksPendingAtCloseAreListed) {
  LogCapture logs;
  corio::EventLoop loop({.debug = true, .virtual_time = true});
  corio::TaskHandle<> h = loop.spawn(sleeps_an_hour());
  h.set_name("still-sleeping");
  loop.call_later(1.0, [&] { loop.stop(); });
  loop.run_forever();
  EXPECT_FALSE(h.done());
  EXPECT_EQ(h.awaiting(), "sleep until 3600.000");
  loop.close();
  EXPECT_TRUE(logs.contains("pending task")) << logs.text();
  EXPECT_TRUE(logs.contains("still-sleeping")) << logs.text();
  EXPECT_TRUE(h.done());
  EXPECT_TRUE(h.cancelled());
}

TEST(Debug, PendingTaskWithDoneCallbackIsFreedAtClose) {
  // A done callback holds a handle to its own task; closing the loop must free the pair (and whatever the
  // callback captured) without running the callback.
  auto token = std::make_shared<int>(0);
  bool called = false;
  {
    corio::EventLoop loop({.virtual_time = true});
    {
      corio::TaskHandle<> h = loop.spawn(sleeps_an_hour());
      h.add_done_callback([&called, token](corio::TaskHandle<>) { called = true; });
    }
    loop.call_later(1.0, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(token.use_count(), 2);
    loop.close();
  }
  EXPECT_FALSE(called);  // the loop is closed: nothing runs any more
  EXPECT_EQ(token.use_count(), 1);
}

TEST(Debug, NothingPendingIsNotListed) {
  LogCapture logs;
  corio::EventLoop loop({.debug = true, .virtual_time = true});
  loop.run_until_complete(two_steps());
  loop.close();
  EXPECT_FALSE(logs.contains("pending task")) << logs.text();
}
