// run(): asyncio.run — value or exception out, leftovers cancelled and awaited, nesting refused.
#include <gtest/gtest.h>

#include <corio/core/errors.hpp>
#include <corio/core/event_loop.hpp>
#include <corio/core/run.hpp>
#include <corio/core/sleep.hpp>
#include <corio/core/task.hpp>
#include <corio/core/task_handle.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/test_util.hpp"

using namespace std::chrono_literals;
using corio_test::Log;

namespace {

corio::Task<int> answer() { co_return 42; }

corio::Task<int> fails() {
  co_await corio::sleep(0s);
  throw std::logic_error("main failed");
  co_return 0;
}

corio::Task<> cancelled_main() {
  corio::current_task().cancel("main cancelled");
  co_await corio::sleep(0s);
}

// Sleeps for an hour; when cancelled, cleans up across several awaits (so run() has to keep the loop
// going for it), then rethrows.
corio::Task<> leftover(Log& log, std::string name) {
  try {
    log.push_back(name + " started");
    co_await corio::sleep(1h);
    log.push_back(name + " woke");
  } catch (const corio::CancelledError&) {
    log.push_back(name + " cancelled");
  }
  co_await corio::sleep(0s);
  co_await corio::sleep(1s);
  log.push_back(name + " cleaned up");
  throw corio::CancelledError();
}

corio::Task<> set_flag(bool& flag) {
  flag = true;
  co_return;
}

// run() from a global object's constructor: this file's globals are initialised before the library's (it
// comes first at link time), so corio must not depend on its own dynamic initialisation (the registry of
// loops and the frame pool's chunk list were null there: a crash before main).
const int kRunAtStaticInit = corio::run([]() -> corio::Task<int> {
  auto h = corio::create_task([]() -> corio::Task<int> { co_return 6; }());
  co_return co_await h + 1;
}());

}  // namespace

TEST(Run, ReturnsTheValue) { EXPECT_EQ(corio::run(answer()), 42); }

TEST(Run, WorksFromAGlobalObjectsConstructor) { EXPECT_EQ(kRunAtStaticInit, 7); }

TEST(Run, VoidMain) {
  bool ran = false;
  corio::run(set_flag(ran));
  EXPECT_TRUE(ran);
}

TEST(Run, RethrowsTheException) {
  try {
    corio::run(fails());
    FAIL() << "run() returned";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "main failed");
  }
}

TEST(Run, RethrowsCancelledErrorOfACancelledMain) {
  try {
    corio::run(cancelled_main());
    FAIL() << "run() returned";
  } catch (const corio::CancelledError& e) {
    EXPECT_EQ(e.message(), "main cancelled");
  }
}

TEST(Run, CancelsLeftoverTasksAndWaitsForTheirCleanup) {
  Log log;
  bool unstarted_ran = false;
  int v = corio::run(
      [&]() -> corio::Task<int> {
        (void)corio::create_task(leftover(log, "a"));
        (void)corio::create_task(leftover(log, "b"));
        co_await corio::sleep(0s);  // a and b start and go to sleep
        // Made by main's done callback, which runs in the loop's last turn: it never gets its first step.
        // (One made by main's last step gets it, as in asyncio: the loop stops the turn after main ends.)
        corio::current_task().add_done_callback(
            [&unstarted_ran](corio::TaskHandle<void>) { (void)corio::create_task(set_flag(unstarted_ran)); });
        co_return 1;
      }(),
      {.virtual_time = true});
  EXPECT_EQ(v, 1);
  EXPECT_FALSE(unstarted_ran);
  EXPECT_EQ(log,
            (Log{"a started", "b started", "a cancelled", "b cancelled", "a cleaned up", "b cleaned up"}));
}

TEST(Run, CancelsLeftoversAlsoWhenMainFails) {
  Log log;
  try {
    corio::run(
        [&]() -> corio::Task<> {
          (void)corio::create_task(leftover(log, "a"));
          co_await corio::sleep(0s);
          throw std::runtime_error("main failed");
        }(),
        {.virtual_time = true});
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "main failed");
  }
  EXPECT_EQ(log, (Log{"a started", "a cancelled", "a cleaned up"}));
}

TEST(Run, InsideARunningLoopThrowsRuntimeError) {
  bool threw = false;
  corio::run([&]() -> corio::Task<> {
    try {
      corio::run(answer());
    } catch (const corio::RuntimeError&) {
      threw = true;
    }
    co_return;
  }());
  EXPECT_TRUE(threw);
}

TEST(Run, InsideALoopCallbackThrowsRuntimeError) {
  corio::EventLoop loop;
  bool threw = false;
  loop.call_soon([&] {
    try {
      corio::run(answer());
    } catch (const corio::RuntimeError&) {
      threw = true;
    }
    loop.stop();
  });
  loop.run_forever();
  EXPECT_TRUE(threw);
}

TEST(Run, NoLoopIsRunningAfterwards) {
  corio::run(answer());
  EXPECT_THROW(corio::get_running_loop(), corio::RuntimeError);
  EXPECT_EQ(corio::run(answer()), 42);  // and run() can be called again
}

TEST(Run, EachRunHasAFreshVirtualClock) {
  for (int i = 0; i < 2; ++i) {
    double t = corio::run(
        []() -> corio::Task<double> {
          co_await corio::sleep(5s);
          co_return corio::get_running_loop().time();
        }(),
        {.virtual_time = true});
    EXPECT_DOUBLE_EQ(t, 5.0);
  }
}

// What main scheduled as it returned still runs before run() closes the loop, as asyncio.run turns the
// loop again before closing it: a call_soon and main's own done callback (both were dropped).
TEST(Run, CallbacksScheduledAsMainReturnsStillRun) {
  std::vector<std::string> log;
  corio::run([](std::vector<std::string>& log) -> corio::Task<> {
    corio::get_running_loop().call_soon([&log] { log.push_back("call_soon"); });
    corio::current_task().add_done_callback(
        [&log](corio::TaskHandle<void>) { log.push_back("main's done callback"); });
    co_return;
  }(log));
  EXPECT_EQ(log, (std::vector<std::string>{"call_soon", "main's done callback"}));
}
