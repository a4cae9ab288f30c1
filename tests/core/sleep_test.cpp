// sleep(): one-turn yield for zero, exact wake-up times under virtual time, cancellation.
#include <gtest/gtest.h>

#include <corio/core/errors.hpp>
#include <corio/core/event_loop.hpp>
#include <corio/core/run.hpp>
#include <corio/core/sleep.hpp>
#include <corio/core/task.hpp>
#include <corio/core/task_handle.hpp>

#include <chrono>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "common/test_util.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;
using corio_test::Log;

namespace {

corio::Task<> alternate(Log& log, std::string name, int steps) {
  for (int i = 0; i < steps; ++i) {
    log.push_back(name);
    co_await corio::sleep(0s);
  }
}

template <class Duration>
corio::Task<> sleep_and_record(std::vector<std::pair<std::string, double>>& woke, std::string name,
                               Duration d) {
  co_await corio::sleep(d);
  woke.emplace_back(std::move(name), corio::get_running_loop().time());
}

}  // namespace

TEST(Sleep, ZeroYieldsExactlyOneTurn) {
  Log log;
  corio::run([&]() -> corio::Task<> {
    auto a = corio::create_task(alternate(log, "A", 3));
    auto b = corio::create_task(alternate(log, "B", 3));
    co_await a;
    co_await b;
  }());
  EXPECT_EQ(log, (Log{"A", "B", "A", "B", "A", "B"}));
}

// Paced against a chain of callbacks that takes exactly one turn per link (each schedules the next with
// call_soon): a sleep(0s) that took two turns would let two links run between two steps. (Two tasks that
// both sleep(0s), above, alternate whatever a sleep(0s) takes.)
TEST(Sleep, ZeroYieldsOneTurnAgainstACallSoonChain) {
  Log log;
  corio::run([&]() -> corio::Task<> {
    corio::EventLoop& loop = corio::get_running_loop();
    auto a = corio::create_task(alternate(log, "A", 3));
    std::function<void(int)> link = [&](int i) {
      log.push_back("c");
      if (i < 2) loop.call_soon([&link, i] { link(i + 1); });
    };
    loop.call_soon([&link] { link(0); });
    co_await a;
  }());
  EXPECT_EQ(log, (Log{"A", "c", "A", "c", "A", "c"}));
}

TEST(Sleep, ZeroLetsCallbacksScheduledBeforeItRunFirst) {
  Log log;
  corio::run([&]() -> corio::Task<> {
    corio::get_running_loop().call_soon([&] { log.push_back("callback"); });
    co_await corio::sleep(0s);
    log.push_back("resumed");
  }());
  EXPECT_EQ(log, (Log{"callback", "resumed"}));
}

TEST(Sleep, NegativeDelayBehavesLikeZero) {
  Log log;
  corio::run([&]() -> corio::Task<> {
    auto a = corio::create_task(alternate(log, "A", 2));
    auto b = corio::create_task([](Log& l) -> corio::Task<> {
      for (int i = 0; i < 2; ++i) {
        l.push_back("B");
        co_await corio::sleep(-5s);
      }
    }(log));
    co_await a;
    co_await b;
  }());
  EXPECT_EQ(log, (Log{"A", "B", "A", "B"}));
}

TEST(Sleep, VirtualTimeAdvancesByExactlyTheDelay) {
  double before = -1, after = -1;
  corio::run(
      [&]() -> corio::Task<> {
        corio::EventLoop& loop = corio::get_running_loop();
        before = loop.time();
        co_await corio::sleep(30s);
        after = loop.time();
      }(),
      kVirtual);
  EXPECT_DOUBLE_EQ(after - before, 30.0);
  EXPECT_NEAR(after - before, 30.0, 1e-9);
}

TEST(Sleep, SleepersWakeInOrderAtTheirTimes) {
  std::vector<std::pair<std::string, double>> woke;
  double start = -1;
  corio::run(
      [&]() -> corio::Task<> {
        start = corio::get_running_loop().time();
        // Created longest first: the order of waking follows due times, not creation.
        auto s20 = corio::create_task(sleep_and_record(woke, "20s", 20s));
        auto s10 = corio::create_task(sleep_and_record(woke, "10s", 10s));
        auto s15 = corio::create_task(sleep_and_record(woke, "15000ms", 15000ms));
        auto s05 = corio::create_task(sleep_and_record(woke, "0.5s", std::chrono::duration<double>(0.5)));
        co_await s20;
        co_await s10;
        co_await s15;
        co_await s05;
      }(),
      kVirtual);
  ASSERT_EQ(woke.size(), 4u);
  EXPECT_EQ(woke[0].first, "0.5s");
  EXPECT_EQ(woke[1].first, "10s");
  EXPECT_EQ(woke[2].first, "15000ms");
  EXPECT_EQ(woke[3].first, "20s");
  EXPECT_DOUBLE_EQ(woke[0].second - start, 0.5);
  EXPECT_DOUBLE_EQ(woke[1].second - start, 10.0);
  EXPECT_DOUBLE_EQ(woke[2].second - start, 15.0);
  EXPECT_DOUBLE_EQ(woke[3].second - start, 20.0);
}

TEST(Sleep, SequentialSleepsAddUp) {
  double t = corio::run(
      []() -> corio::Task<double> {
        for (int i = 0; i < 10; ++i) co_await corio::sleep(100ms);
        co_return corio::get_running_loop().time();
      }(),
      kVirtual);
  EXPECT_DOUBLE_EQ(t, 1.0);
}

TEST(Sleep, CancelledSleepRemovesItsTimer) {
  // A cancelled hour-long sleep must not keep the clock jumping to its due time afterwards.
  double end = -1;
  corio::run(
      [&]() -> corio::Task<> {
        auto h = corio::create_task(corio::sleep(1h));
        co_await corio::sleep(0s);
        h.cancel();
        try {
          co_await h;
        } catch (const corio::CancelledError&) {
        }
        co_await corio::sleep(2s);
        end = corio::get_running_loop().time();
      }(),
      kVirtual);
  EXPECT_DOUBLE_EQ(end, 2.0);
}

TEST(Sleep, ForeverLikeDelayDoesNotOverflow) {
  bool cancelled = false;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task(corio::sleep(std::chrono::nanoseconds::max()));
    co_await corio::sleep(0s);
    EXPECT_EQ(h.awaiting().rfind("sleep until ", 0), 0u);
    h.cancel();
    try {
      co_await h;
    } catch (const corio::CancelledError&) {
      cancelled = true;
    }
  }());
  EXPECT_TRUE(cancelled);
}

// A sleep() is awaited once, like the coroutine asyncio.sleep() returns: the second co_await throws (it
// used to take the first one's due time for a delay, and slept for decades).
TEST(Sleep, AwaitingTheSameSleepTwiceThrows) {
  corio::run(
      []() -> corio::Task<> {
        corio::Sleep s = corio::sleep(1s);
        co_await s;
        bool threw = false;
        try {
          co_await s;
        } catch (const corio::InvalidStateError&) {
          threw = true;
        }
        EXPECT_TRUE(threw);
      }(),
      corio_test::kVirtual);
}

// A negative delay of any size is sleep(0s); NaN is forever, as call_later's are (both were cast to an
// integer out of range: undefined behaviour).
TEST(Sleep, NegativeAndNaNDelaysAreDefined) {
  corio::run(
      []() -> corio::Task<> {
        const double t0 = corio::get_running_loop().time();
        co_await corio::sleep(std::chrono::duration<double>(-1e300));
        co_await corio::sleep(std::chrono::duration<long double>(-1e4000L));
        EXPECT_EQ(corio::get_running_loop().time(), t0);
        auto forever = corio::create_task([]() -> corio::Task<> {
          co_await corio::sleep(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN()));
        }());
        co_await corio::sleep(1000h);
        EXPECT_FALSE(forever.done());
        forever.cancel();
      }(),
      kVirtual);
}
