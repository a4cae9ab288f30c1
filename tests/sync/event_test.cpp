// Event: set wakes every waiter; clear; cancellation while waiting and after being woken.
#include "corio/sync/event.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

#include "common/test_util.hpp"

using namespace std::chrono_literals;
using corio_test::iota;
using corio_test::kVirtual;
using corio_test::parked;
using corio_test::run_then_drop_loop;
using corio_test::turns;

namespace {

corio::Task<> waiter(corio::Event& ev, std::vector<std::string>& log, std::string name) {
  try {
    co_await ev.wait();
  } catch (const corio::CancelledError&) {
    log.push_back(name + ":cancelled");
    throw;
  }
  log.push_back(name);
}

TEST(Event, WaitReturnsAtOnceWhenSet) {
  corio::run(
      []() -> corio::Task<> {
        corio::Event ev;
        EXPECT_FALSE(ev.is_set());
        ev.set();
        EXPECT_TRUE(ev.is_set());
        co_await ev.wait();
        co_await ev.wait();
        ev.clear();
        EXPECT_FALSE(ev.is_set());
      }(),
      kVirtual);
}

TEST(Event, SetWakesEveryWaiterInOrder) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Event ev;
        std::vector<corio::TaskHandle<>> hs;
        for (const char* n : {"a", "b", "c"}) hs.push_back(corio::create_task(waiter(ev, log, n)));
        co_await turns(3);
        EXPECT_TRUE(log.empty());
        for (auto& h : hs) EXPECT_FALSE(h.done());
        ev.set();
        ev.set();           // idempotent
        co_await turns(1);  // every waiter runs on the next turn
        for (auto& h : hs) EXPECT_TRUE(h.done());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(Event, ClearMakesLaterWaitsBlock) {
  corio::run(
      []() -> corio::Task<> {
        corio::Event ev;
        ev.set();
        ev.clear();
        std::vector<std::string> log;
        auto a = corio::create_task(waiter(ev, log, "a"));
        co_await turns(2);
        EXPECT_FALSE(a.done());
        ev.set();
        co_await a;
        EXPECT_EQ(log, (std::vector<std::string>{"a"}));
      }(),
      kVirtual);
}

TEST(Event, SetThenClearInTheSameTurnStillWakesWaiters) {
  // asyncio: the waiters' futures are resolved by set(); clear() afterwards does not un-wake them.
  corio::run(
      []() -> corio::Task<> {
        corio::Event ev;
        std::vector<std::string> log;
        auto a = corio::create_task(waiter(ev, log, "a"));
        co_await turns(1);
        ev.set();
        ev.clear();
        co_await a;
        EXPECT_EQ(log, (std::vector<std::string>{"a"}));
        EXPECT_FALSE(ev.is_set());
      }(),
      kVirtual);
}

TEST(Event, CancelledWaiterLeavesOthersAlone) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Event ev;
        auto a = corio::create_task(waiter(ev, log, "a"));
        auto b = corio::create_task(waiter(ev, log, "b"));
        auto c = corio::create_task(waiter(ev, log, "c"));
        co_await turns(1);
        b.cancel();
        co_await turns(1);
        EXPECT_TRUE(b.cancelled());
        EXPECT_FALSE(a.done());
        EXPECT_FALSE(ev.is_set());
        ev.set();
        co_await a;
        co_await c;
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"b:cancelled", "a", "c"}));
}

TEST(Event, CancelledAfterSetBeforeRunning) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Event ev;
        auto a = corio::create_task(waiter(ev, log, "a"));
        auto b = corio::create_task(waiter(ev, log, "b"));
        co_await turns(1);
        ev.set();
        a.cancel();  // woken, not run yet: it sees CancelledError
        co_await turns(1);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(b.done());
        EXPECT_FALSE(b.cancelled());
        EXPECT_TRUE(ev.is_set());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled", "b"}));
}

TEST(Event, TenThousandWaiters) {
  static constexpr int kN = 10'000;
  corio::run(
      []() -> corio::Task<> {
        corio::Event ev;
        std::vector<int> order;
        order.reserve(kN);
        std::vector<corio::TaskHandle<>> hs;
        hs.reserve(kN);
        for (int i = 0; i < kN; ++i)
          hs.push_back(
              corio::create_task([](corio::Event& ev, std::vector<int>& order, int i) -> corio::Task<> {
                co_await ev.wait();
                order.push_back(i);
              }(ev, order, i)));
        co_await turns(1);
        EXPECT_TRUE(order.empty());
        ev.set();
        co_await turns(1);
        EXPECT_EQ(order, iota(kN));
        for (auto& h : hs) co_await h;
      }(),
      kVirtual);
}

// Waiters whose frames are destroyed while parked (their loop dropped) unlink themselves: set() then wakes
// only live waiters (waking a dead one would touch its freed task and dropped loop: ASan reports that).
TEST(Event, WaitersDestroyedWhileParkedLeaveNoTrace) {
  corio::Event ev;
  std::vector<std::string> log;
  int destroyed = 0;
  run_then_drop_loop([&]() -> corio::Task<> {
    for (int i = 0; i < 3; ++i) (void)corio::create_task(parked(ev.wait(), log, destroyed));
    co_await turns(1);
  });
  EXPECT_EQ(destroyed, 3);
  EXPECT_TRUE(log.empty());
  corio::run(
      [](corio::Event& ev, std::vector<std::string>& log) -> corio::Task<> {
        auto b = corio::create_task(waiter(ev, log, "b"));
        co_await turns(1);
        EXPECT_FALSE(b.done());
        ev.set();
        co_await turns(1);
        EXPECT_TRUE(b.done());
      }(ev, log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"b"}));
}

}  // namespace
