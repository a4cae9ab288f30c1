// as_completed: yields tasks in completion order, already-done ones first; cancels nothing.
#include "corio/flow/as_completed.hpp"
#include "corio/flow/wait_for.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

#include "common/test_util.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;
using corio_test::now;
using corio_test::value_after;

namespace {

TEST(AsCompleted, YieldsInCompletionOrder) {
  corio::run(
      []() -> corio::Task<> {
        std::vector<corio::TaskHandle<int>> hs{corio::create_task(value_after(3, 3s)),
                                               corio::create_task(value_after(1, 1s)),
                                               corio::create_task(value_after(2, 2s))};
        std::vector<int> got;
        std::vector<double> at;
        auto gen = corio::as_completed(hs);
        while (auto h = co_await gen.next()) {
          EXPECT_TRUE(h->done());
          got.push_back(co_await *h);
          at.push_back(now());
        }
        EXPECT_EQ(got, (std::vector<int>{1, 2, 3}));
        CO_ASSERT_EQ(at.size(), 3u);
        EXPECT_NEAR(at[0], 1.0, 1e-9);
        EXPECT_NEAR(at[1], 2.0, 1e-9);
        EXPECT_NEAR(at[2], 3.0, 1e-9);
        // Exhausted: stays exhausted.
        EXPECT_EQ(co_await gen.next(), std::nullopt);
      }(),
      kVirtual);
}

TEST(AsCompleted, AlreadyDoneTasksComeFirstInInputOrder) {
  corio::run(
      []() -> corio::Task<> {
        std::vector<corio::TaskHandle<int>> hs{corio::create_task(value_after(30, 3s)),
                                               corio::create_task(value_after(20, 200ms)),
                                               corio::create_task(value_after(10, 100ms))};
        co_await corio::sleep(1s);
        CO_ASSERT(hs[1].done());
        CO_ASSERT(hs[2].done());
        std::vector<int> got;
        auto gen = corio::as_completed(hs);
        while (auto h = co_await gen.next()) got.push_back(h->result());
        // 20 and 10 were done before: input order (20 before 10), then 30.
        EXPECT_EQ(got, (std::vector<int>{20, 10, 30}));
        EXPECT_NEAR(now(), 3.0, 1e-9);
      }(),
      kVirtual);
}

TEST(AsCompleted, EmptyInputYieldsNothing) {
  corio::run(
      []() -> corio::Task<> {
        auto gen = corio::as_completed(std::vector<corio::TaskHandle<int>>{});
        EXPECT_EQ(co_await gen.next(), std::nullopt);
      }(),
      kVirtual);
}

TEST(AsCompleted, FailedTasksAreYieldedToo) {
  corio::run(
      []() -> corio::Task<> {
        auto bad = corio::create_task([]() -> corio::Task<int> {
          co_await corio::sleep(1s);
          throw std::runtime_error("bad");
        }());
        std::vector<corio::TaskHandle<int>> hs{corio::create_task(value_after(2, 2s)), bad};
        auto gen = corio::as_completed(hs);
        auto first = co_await gen.next();
        CO_ASSERT(first.has_value());
        EXPECT_TRUE(*first == bad);
        try {
          (void)co_await *first;
          ADD_FAILURE() << "no exception";
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "bad");
        }
        auto second = co_await gen.next();
        CO_ASSERT(second.has_value());
        EXPECT_EQ(second->result(), 2);
      }(),
      kVirtual);
}

TEST(AsCompleted, DroppingTheGeneratorCancelsNothing) {
  corio::run(
      []() -> corio::Task<> {
        std::vector<corio::TaskHandle<int>> hs{corio::create_task(value_after(1, 1s)),
                                               corio::create_task(value_after(2, 2s))};
        {
          auto gen = corio::as_completed(hs);
          auto h = co_await gen.next();
          CO_ASSERT(h.has_value());
          EXPECT_EQ(h->result(), 1);
        }  // destroyed with a task still pending: its watcher must be gone
        EXPECT_FALSE(hs[1].done());
        EXPECT_EQ(co_await hs[1], 2);
        EXPECT_NEAR(now(), 2.0, 1e-9);
      }(),
      kVirtual);
}

TEST(AsCompleted, CancellingTheConsumerCancelsNothing) {
  corio::run(
      []() -> corio::Task<> {
        std::vector<corio::TaskHandle<int>> hs{corio::create_task(value_after(1, 3s))};
        auto consumer = corio::create_task([](std::vector<corio::TaskHandle<int>> hs) -> corio::Task<> {
          auto gen = corio::as_completed(hs);
          while (co_await gen.next()) {
          }
        }(hs));
        co_await corio::sleep(1s);
        consumer.cancel("stop");
        // The error the consumer ended with is whole (g++ 12 freed it as the generator's frame went: a
        // temporary in a co_yield), and carries the message.
        CO_EXPECT_THROW_AS(co_await consumer, corio::CancelledError, e, EXPECT_EQ(e.message(), "stop"));
        EXPECT_FALSE(hs[0].done());
        EXPECT_EQ(co_await hs[0], 1);
      }(),
      kVirtual);
}

}  // namespace

// A next() cancelled while it waits throws CancelledError, and the iteration goes on: the next next() gets
// the tasks left (the cancelled wait used to end the generator, and the rest never came).
TEST(AsCompleted, ACancelledNextLetsTheIterationGoOn) {
  corio::run(
      []() -> corio::Task<> {
        std::vector<corio::TaskHandle<int>> hs{corio::create_task(value_after(1, 1s)),
                                               corio::create_task(value_after(2, 2s)),
                                               corio::create_task(value_after(3, 3s))};
        auto gen = corio::as_completed(hs);
        bool timed_out = false;
        try {
          (void)co_await corio::wait_for(gen.next(), 500ms);  // nothing done yet
        } catch (const corio::TimeoutError&) {
          timed_out = true;
        }
        EXPECT_TRUE(timed_out);
        std::vector<int> got;
        while (auto h = co_await gen.next()) got.push_back(co_await *h);
        EXPECT_EQ(got, (std::vector<int>{1, 2, 3}));
      }(),
      kVirtual);
}

namespace {
// A task given twice is yielded once, as asyncio's as_completed works on a set of its arguments.
TEST(AsCompleted, ATaskGivenTwiceIsYieldedOnce) {
  corio::run(
      []() -> corio::Task<> {
        auto a = corio::create_task(value_after(1, 2s));
        auto b = corio::create_task(value_after(2, 1s));
        auto gen = corio::as_completed(std::vector<corio::TaskHandle<int>>{a, b, a, b, a});
        std::vector<int> got;
        while (auto h = co_await gen.next()) {
          const int v = co_await *h;
          got.push_back(v);
        }
        EXPECT_EQ(got, (std::vector<int>{2, 1}));
      }(),
      kVirtual);
}
}  // namespace
