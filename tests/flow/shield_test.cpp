// shield: the awaiter's cancellation does not reach the shielded task.
#include "corio/flow/shield.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

#include "common/test_util.hpp"
#include "flow/fails_then_cancels.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;
using corio_test::now;

namespace {

corio::Task<std::string> value_after(std::string v, std::chrono::milliseconds d) {
  co_await corio::sleep(d);
  co_return v;
}

TEST(Shield, ReturnsTheResult) {
  corio::run(
      []() -> corio::Task<> {
        auto h = corio::create_task(value_after("x", 1s));
        EXPECT_EQ(co_await corio::shield(h), "x");
        EXPECT_EQ(co_await corio::shield(value_after("y", 1s)), "y");
        EXPECT_NEAR(now(), 2.0, 1e-9);
        // Already done.
        EXPECT_EQ(co_await corio::shield(h), "x");
      }(),
      kVirtual);
}

TEST(Shield, OuterCancelledAtOnceInnerKeepsRunning) {
  corio::run(
      []() -> corio::Task<> {
        auto inner = corio::create_task(value_after("kept", 5s));
        double outer_cancelled_at = -1;
        auto outer = corio::create_task(
            [](corio::TaskHandle<std::string> inner, double* at) -> corio::Task<std::string> {
              try {
                co_return co_await corio::shield(inner);
              } catch (const corio::CancelledError&) {
                *at = now();
                throw;
              }
            }(inner, &outer_cancelled_at));
        co_await corio::sleep(1s);
        outer.cancel("go away");
        try {
          co_await outer;
          ADD_FAILURE() << "outer finished";
        } catch (const corio::CancelledError& e) {
          EXPECT_EQ(e.message(), "go away");
        }
        // The outer got its CancelledError at once (the turn after the cancel), not when the inner ended.
        EXPECT_NEAR(outer_cancelled_at, 1.0, 1e-9);
        EXPECT_NEAR(now(), 1.0, 1e-9);
        EXPECT_TRUE(outer.cancelled());
        EXPECT_FALSE(inner.done());
        EXPECT_EQ(inner.cancelling(), 0);
        // The inner still finishes, and its result is available.
        EXPECT_EQ(co_await inner, "kept");
        EXPECT_NEAR(now(), 5.0, 1e-9);
        EXPECT_EQ(inner.result(), "kept");
        EXPECT_FALSE(inner.cancelled());
      }(),
      kVirtual);
}

TEST(Shield, ShieldedTaskFromTaskSurvivesOuterCancel) {
  corio::run(
      []() -> corio::Task<> {
        bool finished = false;
        auto outer = corio::create_task([](bool* finished) -> corio::Task<> {
          co_await corio::shield([](bool* finished) -> corio::Task<> {
            co_await corio::sleep(3s);
            *finished = true;
          }(finished));
        }(&finished));
        co_await corio::sleep(1s);
        outer.cancel();
        EXPECT_THROW(co_await outer, corio::CancelledError);
        EXPECT_FALSE(finished);
        co_await corio::sleep(5s);
        EXPECT_TRUE(finished);  // the loop kept the unreferenced inner task running
      }(),
      kVirtual);
}

TEST(Shield, InnerExceptionPropagates) {
  corio::run(
      []() -> corio::Task<> {
        auto h = corio::create_task([]() -> corio::Task<int> {
          co_await corio::sleep(1s);
          throw std::runtime_error("inner");
        }());
        try {
          (void)co_await corio::shield(h);
          ADD_FAILURE() << "no exception";
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "inner");
        }
      }(),
      kVirtual);
}

}  // namespace

// A move-only result: shield(Task) moves it out of the task it made (it did not compile: the value was
// copied); shield(TaskHandle) of a move-only result moves it, as co_await std::move(handle) does.
TEST(Shield, AMoveOnlyResultIsMovedOut) {
  corio::run(
      []() -> corio::Task<> {
        auto make = [](int v) -> corio::Task<std::unique_ptr<int>> {
          co_await corio::sleep(1s);
          co_return std::make_unique<int>(v);
        };
        std::unique_ptr<int> a = co_await corio::shield(make(3));
        EXPECT_TRUE(a && *a == 3);
        auto h = corio::create_task(make(4));
        std::unique_ptr<int> b = co_await corio::shield(h);
        EXPECT_TRUE(b && *b == 4);
      }(),
      kVirtual);
}

// The shielded task fails and the awaiting task is cancelled before it resumes: CancelledError, and the
// failure counts as retrieved, as asyncio's shield marks it (no "never retrieved" report).
TEST(Shield, AFailureSeenByACancelledAwaiterIsRetrieved) {
  corio_test::expect_a_cancelled_awaiter_retrieves_the_failure(
      [](corio::Task<int> inner) -> corio::Task<> { (void)co_await corio::shield(std::move(inner)); });
}
