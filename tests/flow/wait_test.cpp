// wait: the three ReturnWhen modes, timeouts, input order, cancelling nothing.
#include "corio/flow/wait.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

#include "common/test_util.hpp"
#include "core/log_capture.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;
using corio_test::now;
using corio_test::value_after;

namespace {

corio::Task<int> fail_after(std::chrono::milliseconds d) {
  co_await corio::sleep(d);
  throw std::runtime_error("failed");
}

using Handles = std::vector<corio::TaskHandle<int>>;

// The values of a list of done handles.
std::vector<int> values(const Handles& hs) {
  std::vector<int> out;
  for (const auto& h : hs) out.push_back(h.result());
  return out;
}

// A task with a cancellation pending waits for tasks that are all done: CancelledError, as asyncio's wait
// (it still suspends once, until its done callbacks run). It returned at once and left the cancellation to
// the next await.
TEST(Wait, OfDoneTasksRaisesACancellationPendingOnTheAwaiter) {
  std::string got;
  corio::run(
      [](std::string& got) -> corio::Task<> {
        Handles hs{corio::create_task(value_after(1, 0ms))};
        co_await corio::sleep(10ms);
        corio::current_task().cancel();
        try {
          (void)co_await corio::wait(hs);
          got = "returned";
        } catch (const corio::CancelledError&) {
          got = "cancelled";
        }
        corio::current_task().uncancel();
        co_await corio::sleep(0s);  // nothing left pending
      }(got),
      kVirtual);
  EXPECT_EQ(got, "cancelled");
}

TEST(Wait, AllCompleted) {
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(value_after(1, 3s)), corio::create_task(value_after(2, 1s)),
                   corio::create_task(value_after(3, 2s))};
        auto r = co_await corio::wait(hs);
        EXPECT_NEAR(now(), 3.0, 1e-9);
        EXPECT_TRUE(r.pending.empty());
        CO_ASSERT_EQ(r.done.size(), 3u);
        // Input order, not completion order.
        EXPECT_EQ(values(r.done), (std::vector<int>{1, 2, 3}));
        EXPECT_TRUE(r.done[0] == hs[0]);
      }(),
      kVirtual);
}

// A task given twice is waited for and listed once, in the place it first had, as asyncio's wait (which
// takes a set) lists it. It was listed twice: done = {a, a} for one task done.
TEST(Wait, ATaskGivenTwiceIsListedOnce) {
  corio::run(
      []() -> corio::Task<> {
        auto a = corio::create_task(value_after(1, 1s));
        auto b = corio::create_task(value_after(2, 2s));
        Handles aba{a, b, a};
        auto r = co_await corio::wait(aba, corio::ReturnWhen::first_completed);
        EXPECT_NEAR(now(), 1.0, 1e-9);
        CO_ASSERT_EQ(r.done.size(), 1u);
        EXPECT_TRUE(r.done[0] == a);
        CO_ASSERT_EQ(r.pending.size(), 1u);
        EXPECT_TRUE(r.pending[0] == b);
        Handles babb{b, a, b, b};
        auto all = co_await corio::wait(babb);
        EXPECT_EQ(values(all.done), (std::vector<int>{2, 1}));
        EXPECT_TRUE(all.pending.empty());
      }(),
      kVirtual);
}

TEST(Wait, AllCompletedWithTimeout) {
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(value_after(1, 3s)), corio::create_task(value_after(2, 1s)),
                   corio::create_task(value_after(3, 2s))};
        auto r = co_await corio::wait(hs, corio::ReturnWhen::all_completed, 2500ms);
        EXPECT_NEAR(now(), 2.5, 1e-9);
        EXPECT_EQ(values(r.done), (std::vector<int>{2, 3}));
        CO_ASSERT_EQ(r.pending.size(), 1u);
        EXPECT_TRUE(r.pending[0] == hs[0]);
        // Nothing was cancelled: the pending task still finishes.
        EXPECT_FALSE(hs[0].done());
        EXPECT_EQ(co_await hs[0], 1);
        EXPECT_NEAR(now(), 3.0, 1e-9);

        // A timeout longer than the work: returns when everything is done.
        Handles more{corio::create_task(value_after(4, 1s))};
        auto r2 = co_await corio::wait(more, corio::ReturnWhen::all_completed, 10s);
        EXPECT_NEAR(now(), 4.0, 1e-9);
        EXPECT_EQ(r2.done.size(), 1u);
        EXPECT_TRUE(r2.pending.empty());
      }(),
      kVirtual);
}

TEST(Wait, FirstCompleted) {
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(value_after(1, 3s)), corio::create_task(value_after(2, 1s)),
                   corio::create_task(value_after(3, 2s))};
        auto r = co_await corio::wait(hs, corio::ReturnWhen::first_completed);
        EXPECT_NEAR(now(), 1.0, 1e-9);
        EXPECT_EQ(values(r.done), (std::vector<int>{2}));
        CO_ASSERT_EQ(r.pending.size(), 2u);
        EXPECT_TRUE(r.pending[0] == hs[0]);
        EXPECT_TRUE(r.pending[1] == hs[2]);
        // wait cancels nothing: the pending tasks still run to completion.
        co_await corio::sleep(5s);
        EXPECT_EQ(hs[0].result(), 1);
        EXPECT_EQ(hs[2].result(), 3);
        EXPECT_FALSE(hs[0].cancelled());
      }(),
      kVirtual);
}

TEST(Wait, FirstCompletedWithTimeout) {
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(value_after(1, 3s)), corio::create_task(value_after(2, 2s))};
        auto r = co_await corio::wait(hs, corio::ReturnWhen::first_completed, 500ms);
        EXPECT_NEAR(now(), 0.5, 1e-9);
        EXPECT_TRUE(r.done.empty());
        CO_ASSERT_EQ(r.pending.size(), 2u);
        EXPECT_TRUE(r.pending[0] == hs[0]);
        EXPECT_TRUE(r.pending[1] == hs[1]);

        auto r2 = co_await corio::wait(hs, corio::ReturnWhen::first_completed, 10s);
        EXPECT_NEAR(now(), 2.0, 1e-9);
        EXPECT_EQ(values(r2.done), (std::vector<int>{2}));
        EXPECT_EQ(r2.pending.size(), 1u);
        EXPECT_EQ(co_await hs[0], 1);
      }(),
      kVirtual);
}

TEST(Wait, FirstException) {
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(value_after(1, 3s)), corio::create_task(value_after(2, 1s)),
                   corio::create_task(fail_after(2s)), corio::create_task(value_after(4, 5s))};
        auto r = co_await corio::wait(hs, corio::ReturnWhen::first_exception);
        // Returned at the failure, not at the first completion.
        EXPECT_NEAR(now(), 2.0, 1e-9);
        CO_ASSERT_EQ(r.done.size(), 2u);
        EXPECT_TRUE(r.done[0] == hs[1]);
        EXPECT_TRUE(r.done[1] == hs[2]);
        EXPECT_THROW(r.done[1].result(), std::runtime_error);
        CO_ASSERT_EQ(r.pending.size(), 2u);
        EXPECT_TRUE(r.pending[0] == hs[0]);
        EXPECT_TRUE(r.pending[1] == hs[3]);
        co_await corio::sleep(10s);
        EXPECT_EQ(hs[0].result(), 1);
        EXPECT_EQ(hs[3].result(), 4);
      }(),
      kVirtual);
}

// asyncio 3.11: wait(FIRST_EXCEPTION) looks at the exception of the task that made it return (its
// completion callback calls f.exception()): no "Task exception was never retrieved" for it.
TEST(Wait, FirstExceptionRetrievesTheFailureItReturnedFor) {
  corio_test::LogCapture logs;
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(fail_after(1s)), corio::create_task(value_after(2, 10s))};
        auto r = co_await corio::wait(std::move(hs), corio::ReturnWhen::first_exception);
        CO_ASSERT_EQ(r.done.size(), 1u);
        CO_ASSERT_EQ(r.pending.size(), 1u);
        r.pending[0].cancel();
      }(),
      kVirtual);
  EXPECT_FALSE(logs.contains("never retrieved")) << logs.text();
}

// The same for a task that had failed before wait() was called: asyncio runs the completion callback of a
// done task too (at once, call_soon), and it calls f.exception() while other tasks remain. wait() returns at
// once; the failure is not "never retrieved".
TEST(Wait, FirstExceptionRetrievesAFailureThatCameBeforeTheWait) {
  corio_test::LogCapture logs;
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(fail_after(0ms)), corio::create_task(value_after(2, 10s))};
        co_await corio::sleep(1s);
        CO_ASSERT(hs[0].done());
        auto r = co_await corio::wait(std::move(hs), corio::ReturnWhen::first_exception);
        EXPECT_NEAR(now(), 1.0, 1e-9);
        CO_ASSERT_EQ(r.done.size(), 1u);
        CO_ASSERT_EQ(r.pending.size(), 1u);
        r.pending[0].cancel();
      }(),
      kVirtual);
  EXPECT_FALSE(logs.contains("never retrieved")) << logs.text();
}

// asyncio 3.11 does not look at the last task its callbacks count (counter <= 0 comes first): a failed task
// waited alone, or with FIRST_COMPLETED / ALL_COMPLETED, is still reported as never retrieved.
TEST(Wait, ALoneOrNotFirstExceptionFailureIsStillNeverRetrieved) {
  for (auto when : {corio::ReturnWhen::first_exception, corio::ReturnWhen::all_completed,
                    corio::ReturnWhen::first_completed}) {
    corio_test::LogCapture logs;
    corio::run(
        [](corio::ReturnWhen when) -> corio::Task<> {
          Handles hs{corio::create_task(fail_after(0ms))};
          co_await corio::sleep(1s);
          CO_ASSERT(hs[0].done());
          auto r = co_await corio::wait(std::move(hs), when);
          CO_ASSERT_EQ(r.done.size(), 1u);
        }(when),
        kVirtual);
    EXPECT_TRUE(logs.contains("never retrieved")) << static_cast<int>(when) << "\n" << logs.text();
  }
}

TEST(Wait, FirstExceptionWithoutFailureWaitsForAll) {
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(value_after(1, 2s)), corio::create_task(value_after(2, 1s))};
        auto r = co_await corio::wait(hs, corio::ReturnWhen::first_exception);
        EXPECT_NEAR(now(), 2.0, 1e-9);
        EXPECT_EQ(values(r.done), (std::vector<int>{1, 2}));
        EXPECT_TRUE(r.pending.empty());
      }(),
      kVirtual);
}

TEST(Wait, FirstExceptionWithTimeout) {
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(value_after(1, 1s)), corio::create_task(fail_after(3s))};
        auto r = co_await corio::wait(hs, corio::ReturnWhen::first_exception, 2s);
        EXPECT_NEAR(now(), 2.0, 1e-9);
        EXPECT_EQ(values(r.done), (std::vector<int>{1}));
        CO_ASSERT_EQ(r.pending.size(), 1u);
        EXPECT_TRUE(r.pending[0] == hs[1]);
        auto r2 = co_await corio::wait(hs, corio::ReturnWhen::first_exception, 2s);
        EXPECT_NEAR(now(), 3.0, 1e-9);
        EXPECT_EQ(r2.done.size(), 2u);
        EXPECT_TRUE(r2.pending.empty());
        EXPECT_THROW(hs[1].result(), std::runtime_error);
      }(),
      kVirtual);
}

TEST(Wait, CancelledTaskIsNotAnException) {
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(value_after(1, 2s)), corio::create_task(value_after(2, 10s))};
        corio::get_running_loop().call_later(1s, [h = hs[1]]() mutable { h.cancel(); });
        auto r = co_await corio::wait(hs, corio::ReturnWhen::first_exception);
        EXPECT_NEAR(now(), 2.0, 1e-9);
        EXPECT_EQ(r.done.size(), 2u);
        EXPECT_TRUE(hs[1].cancelled());
      }(),
      kVirtual);
}

TEST(Wait, AlreadyDoneReturnsAtOnce) {
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(value_after(1, 0ms)), corio::create_task(value_after(2, 5s))};
        co_await corio::sleep(1s);
        CO_ASSERT(hs[0].done());
        auto r = co_await corio::wait(hs, corio::ReturnWhen::first_completed);
        EXPECT_NEAR(now(), 1.0, 1e-9);
        EXPECT_EQ(r.done.size(), 1u);
        EXPECT_EQ(r.pending.size(), 1u);
      }(),
      kVirtual);
}

TEST(Wait, EmptyInputThrowsInvalidArgument) {
  corio::run(
      []() -> corio::Task<> {
        EXPECT_THROW(co_await corio::wait(Handles{}), std::invalid_argument);
        EXPECT_THROW(co_await corio::wait(Handles{}, corio::ReturnWhen::first_completed, 1s),
                     std::invalid_argument);
      }(),
      kVirtual);
}

TEST(Wait, CancellingTheWaiterLeavesTasksRunning) {
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task(value_after(1, 3s))};
        auto waiter = corio::create_task([](Handles hs) -> corio::Task<> { co_await corio::wait(hs); }(hs));
        co_await corio::sleep(1s);
        waiter.cancel();
        EXPECT_THROW(co_await waiter, corio::CancelledError);
        EXPECT_FALSE(hs[0].done());
        EXPECT_EQ(co_await hs[0], 1);
        EXPECT_NEAR(now(), 3.0, 1e-9);
      }(),
      kVirtual);
}

// A timeout of 0 waits one turn, as asyncio's does (call_later(0)): a task that was ready to finish in that
// turn is done, one still sleeping is pending. (It returned at once, before either ran.)
TEST(Wait, TimeoutZeroWaitsOneTurn) {
  corio::run(
      []() -> corio::Task<> {
        Handles hs{corio::create_task([]() -> corio::Task<int> { co_return 1; }()),
                   corio::create_task(value_after(2, 1s))};
        auto r = co_await corio::wait(hs, corio::ReturnWhen::all_completed, 0ns);
        EXPECT_EQ(r.done.size(), 1u);
        EXPECT_EQ(r.pending.size(), 1u);
        if (r.done.size() != 1 || r.pending.size() != 1) co_return;
        EXPECT_EQ(r.done[0].result(), 1);
        const int second = co_await r.pending[0];
        EXPECT_EQ(second, 2);
        Handles one{corio::create_task(value_after(3, 1s))};
        auto negative = co_await corio::wait(one, corio::ReturnWhen::first_completed, -5s);
        EXPECT_EQ(negative.pending.size(), 1u);
        const int third = co_await one[0];
        EXPECT_EQ(third, 3);
      }(),
      kVirtual);
}

}  // namespace
