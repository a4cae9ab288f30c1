// Barrier: arrival indices, cycles, abort, reset, cancellation of a waiter.
#include "corio/sync/barrier.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "corio/core/async_generator.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

#include "common/test_util.hpp"
#include "sync/destroyed_under_waiter.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;
using corio_test::turns;

namespace {

// Returns the index, or -1 for BrokenBarrierError (-2 for CancelledError, rethrown).
corio::Task<long> arrive(corio::Barrier& b, std::vector<std::string>& log, std::string name) {
  try {
    std::size_t i = co_await b.wait();
    log.push_back(name + ":" + std::to_string(i));
    co_return static_cast<long>(i);
  } catch (const corio::BrokenBarrierError&) {
    log.push_back(name + ":broken");
    co_return -1;
  } catch (const corio::CancelledError&) {
    log.push_back(name + ":cancelled");
    throw;
  }
}

TEST(Barrier, ReleasesAllWithArrivalIndices) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Barrier b(3);
        EXPECT_EQ(b.parties(), 3u);
        auto x = corio::create_task(arrive(b, log, "x"));
        auto y = corio::create_task(arrive(b, log, "y"));
        co_await turns(2);
        EXPECT_EQ(b.n_waiting(), 2u);
        EXPECT_FALSE(x.done());
        EXPECT_TRUE(log.empty());
        // The last arrival does not suspend and releases the others.
        std::size_t mine = co_await b.wait();
        EXPECT_EQ(mine, 2u);
        log.push_back("main:2");
        EXPECT_EQ(b.n_waiting(), 0u);
        EXPECT_EQ(co_await x, 0);
        EXPECT_EQ(co_await y, 1);
        EXPECT_FALSE(b.broken());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"main:2", "x:0", "y:1"}));
}

TEST(Barrier, IsReusableAcrossCycles) {
  corio::run(
      []() -> corio::Task<> {
        static constexpr int kParties = 4;
        static constexpr int kRounds = 5;
        corio::Barrier b(kParties);
        std::vector<std::vector<std::size_t>> seen(kRounds);
        std::vector<int> progress(kParties, 0);
        std::vector<corio::TaskHandle<>> hs;
        for (int p = 0; p < kParties; ++p)
          hs.push_back(corio::create_task([](corio::Barrier& b, std::vector<std::vector<std::size_t>>& seen,
                                             std::vector<int>& progress, int p) -> corio::Task<> {
            for (int r = 0; r < kRounds; ++r) {
              // Stagger arrivals so the order differs per round.
              for (int k = 0; k < (p + r) % kParties; ++k) co_await corio::sleep(0s);
              seen[r].push_back(co_await b.wait());
              progress[p] = r + 1;
              // Nobody may be more than one round ahead of anybody.
              for (int q : progress) EXPECT_LE(r + 1 - q, 1);
            }
          }(b, seen, progress, p)));
        for (auto& h : hs) co_await h;
        for (auto& s : seen) {
          std::sort(s.begin(), s.end());
          EXPECT_EQ(s, (std::vector<std::size_t>{0, 1, 2, 3}));
        }
      }(),
      kVirtual);
}

TEST(Barrier, SinglePartyNeverWaits) {
  corio::run(
      []() -> corio::Task<> {
        corio::Barrier b(1);
        EXPECT_EQ(co_await b.wait(), 0u);
        EXPECT_EQ(co_await b.wait(), 0u);
      }(),
      kVirtual);
  EXPECT_THROW(corio::Barrier(0), corio::Error);
}

TEST(Barrier, AbortBreaksWaitersAndLaterWaits) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Barrier b(3);
        auto x = corio::create_task(arrive(b, log, "x"));
        auto y = corio::create_task(arrive(b, log, "y"));
        co_await turns(1);
        co_await b.abort();
        EXPECT_TRUE(b.broken());
        EXPECT_EQ(co_await x, -1);
        EXPECT_EQ(co_await y, -1);
        bool threw = false;
        try {
          co_await b.wait();
        } catch (const corio::BrokenBarrierError&) {
          threw = true;
        }
        EXPECT_TRUE(threw);
        // reset() repairs it.
        co_await b.reset();
        EXPECT_FALSE(b.broken());
        auto z = corio::create_task(arrive(b, log, "z"));
        auto w = corio::create_task(arrive(b, log, "w"));
        co_await turns(1);
        EXPECT_EQ(co_await b.wait(), 2u);
        EXPECT_EQ(co_await z, 0);
        EXPECT_EQ(co_await w, 1);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"x:broken", "y:broken", "z:0", "w:1"}));
}

TEST(Barrier, ResetBreaksWaitersAndWorksAgain) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Barrier b(2);
        auto x = corio::create_task(arrive(b, log, "x"));
        co_await turns(1);
        EXPECT_EQ(b.n_waiting(), 1u);
        co_await b.reset();
        EXPECT_FALSE(b.broken());
        EXPECT_EQ(b.n_waiting(), 0u);
        EXPECT_EQ(co_await x, -1);
        // The arrival of x was dropped: a full new cycle of 2 is needed.
        auto y = corio::create_task(arrive(b, log, "y"));
        co_await turns(2);
        EXPECT_FALSE(y.done());
        EXPECT_EQ(co_await b.wait(), 1u);
        EXPECT_EQ(co_await y, 0);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"x:broken", "y:0"}));
}

TEST(Barrier, CancelledWaiterLeaves) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Barrier b(3);
        auto x = corio::create_task(arrive(b, log, "x"));
        auto y = corio::create_task(arrive(b, log, "y"));
        co_await turns(1);
        x.cancel();
        // Until x's step runs it still counts, as asyncio's n_waiting (its _count) says: it was 1, the
        // parked waiters only.
        EXPECT_EQ(b.n_waiting(), 2u);
        co_await turns(1);
        EXPECT_TRUE(x.cancelled());
        EXPECT_EQ(b.n_waiting(), 1u);
        EXPECT_FALSE(b.broken());
        // x's arrival was undone: main arriving does not fill the barrier.
        auto main_wait = corio::create_task(arrive(b, log, "main"));
        co_await turns(2);
        EXPECT_FALSE(y.done());
        EXPECT_FALSE(main_wait.done());
        auto z = corio::create_task(arrive(b, log, "z"));
        co_await y;
        co_await main_wait;
        co_await z;
        EXPECT_EQ(b.n_waiting(), 0u);
      }(log),
      kVirtual);
  ASSERT_EQ(log.size(), 4u);
  EXPECT_EQ(log[0], "x:cancelled");
  // Three parties passed; every index 0..2 appears once.
  std::vector<std::string> idx;
  for (std::size_t i = 1; i < log.size(); ++i) idx.push_back(log[i].substr(log[i].find(':') + 1));
  std::sort(idx.begin(), idx.end());
  EXPECT_EQ(idx, (std::vector<std::string>{"0", "1", "2"}));
}

// A reset or an abort right after the barrier filled, before the released tasks ran: as asyncio (their
// wait sees the barrier BROKEN or RESETTING when it resumes), they get BrokenBarrierError; the filling
// arrival, which did not wait, keeps its index.
corio::Task<> break_after_fill(bool abort, std::vector<std::string>& log) {
  corio::Barrier b(3);
  auto x = corio::create_task(arrive(b, log, "x"));
  auto y = corio::create_task(arrive(b, log, "y"));
  co_await turns(1);
  EXPECT_EQ(co_await b.wait(), 2u);  // releases x and y, which have not run yet
  if (abort)
    co_await b.abort();
  else
    co_await b.reset();
  EXPECT_EQ(co_await x, -1);
  EXPECT_EQ(co_await y, -1);
  EXPECT_EQ(b.broken(), abort);
  if (abort) co_return;
  // Reset: a new cycle of 3 works.
  auto p = corio::create_task(arrive(b, log, "p"));
  auto q = corio::create_task(arrive(b, log, "q"));
  co_await turns(1);
  EXPECT_EQ(co_await b.wait(), 2u);
  EXPECT_EQ(co_await p, 0);
  EXPECT_EQ(co_await q, 1);
}

TEST(Barrier, AbortRightAfterTheFillBreaksTheReleasedTasksNotRunYet) {
  std::vector<std::string> log;
  corio::run(break_after_fill(true, log), kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"x:broken", "y:broken"}));
}

TEST(Barrier, ResetRightAfterTheFillBreaksTheReleasedTasksNotRunYet) {
  std::vector<std::string> log;
  corio::run(break_after_fill(false, log), kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"x:broken", "y:broken", "p:0", "q:1"}));
}

// Released, then the barrier is destroyed before the released task runs: the task gets its index and does
// not touch the freed barrier (ASan), and an abort of the next cycle's barrier is unaffected.
TEST(Barrier, DestroyedBetweenTheReleaseAndTheReleasedTasksTurn) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        auto b = std::make_unique<corio::Barrier>(2);
        auto x = corio::create_task(arrive(*b, log, "x"));
        co_await turns(1);
        EXPECT_EQ(co_await b->wait(), 1u);
        b.reset();
        EXPECT_EQ(co_await x, 0);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"x:0"}));
}

TEST(Barrier, CancelledAfterReleaseBeforeRunning) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Barrier b(2);
        auto x = corio::create_task(arrive(b, log, "x"));
        co_await turns(1);
        EXPECT_EQ(co_await b.wait(), 1u);  // releases x
        x.cancel();                        // before x runs: it sees CancelledError; the barrier is fine
        co_await turns(1);
        EXPECT_TRUE(x.cancelled());
        EXPECT_FALSE(b.broken());
        EXPECT_EQ(b.n_waiting(), 0u);
        // The next cycle starts from zero.
        auto y = corio::create_task(arrive(b, log, "y"));
        co_await turns(1);
        EXPECT_EQ(co_await b.wait(), 1u);
        EXPECT_EQ(co_await y, 0);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"x:cancelled", "y:0"}));
}

// A waiter cancelled, and the barrier filled before its task ran: it still counted toward the fill, so it
// keeps its arrival index and the others keep theirs, as asyncio 3.11's Barrier does (there each index is
// the count at arrival; the cancelled waiter leaves only when its step runs). The waiters still there were
// numbered from 0 with the filling arrival at the end: an index was skipped ({0, 2} out of 3), and the
// others' indices depended on a cancellation they did not see.
corio::Task<> cancel_then_fill(std::size_t parties, std::size_t cancelled, std::vector<std::string>& log) {
  corio::Barrier b(parties);
  std::vector<corio::TaskHandle<long>> ts;
  for (std::size_t i = 0; i + 1 < parties; ++i)
    ts.push_back(corio::create_task(arrive(b, log, std::string(1, static_cast<char>('a' + i)))));
  co_await turns(1);
  ts[cancelled].cancel();  // its task has not run yet when main fills the barrier
  EXPECT_EQ(co_await b.wait(), parties - 1);
  for (std::size_t i = 0; i < ts.size(); ++i) {
    if (i == cancelled) {
      EXPECT_THROW((void)co_await ts[i], corio::CancelledError);
    } else {
      EXPECT_EQ(co_await ts[i], static_cast<long>(i));
    }
  }
  EXPECT_EQ(b.n_waiting(), 0u);
  // The next cycle is unaffected.
  std::vector<corio::TaskHandle<long>> next;
  for (std::size_t i = 0; i + 1 < parties; ++i) next.push_back(corio::create_task(arrive(b, log, "n")));
  co_await turns(1);
  EXPECT_EQ(co_await b.wait(), parties - 1);
  for (std::size_t i = 0; i < next.size(); ++i) EXPECT_EQ(co_await next[i], static_cast<long>(i));
}

TEST(Barrier, AWaiterCancelledJustBeforeTheFillKeepsItsIndexAsAsyncio) {
  // asyncio: Barrier(3), a and b wait, a cancelled, main fills: a cancelled, b:1, main:2.
  std::vector<std::string> log;
  corio::run(cancel_then_fill(3, 0, log), kVirtual);
  std::sort(log.begin(), log.end());
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled", "b:1", "n:0", "n:1"}));
  // asyncio: Barrier(4), a, b and c wait, b cancelled, main fills: a:0, b cancelled, c:2, main:3.
  log.clear();
  corio::run(cancel_then_fill(4, 1, log), kVirtual);
  std::sort(log.begin(), log.end());  // (the order the tasks ran in is not the point)
  EXPECT_EQ(log, (std::vector<std::string>{"a:0", "b:cancelled", "c:2", "n:0", "n:1", "n:2"}));
}

TEST(Barrier, TenThousandParties) {
  static constexpr std::size_t kN = 10'000;
  corio::run(
      []() -> corio::Task<> {
        corio::Barrier b(kN);
        std::vector<std::size_t> got(kN, kN);
        std::vector<corio::TaskHandle<>> hs;
        hs.reserve(kN);
        for (std::size_t i = 0; i < kN; ++i)
          hs.push_back(corio::create_task([](corio::Barrier& b, std::vector<std::size_t>& got, std::size_t i)
                                              -> corio::Task<> { got[i] = co_await b.wait(); }(b, got, i)));
        for (auto& h : hs) co_await h;
        // Tasks arrive in creation order: task i is the i-th arrival.
        bool in_order = true;
        for (std::size_t i = 0; i < kN; ++i) in_order = in_order && got[i] == i;
        EXPECT_TRUE(in_order);
      }(),
      kVirtual);
}

// A waiter cancelled and then, before it runs, swept away by reset() or by the arrival that fills the
// barrier, does not undo its arrival in the new cycle: the count went below zero (wrapped) and every later
// cycle needed one more party. `sweep` is that reset or arrival, made while a (cancelled) has not run yet.
static void cancelled_waiter_then(corio::Task<> (*sweep)(corio::Barrier&)) {
  corio::run(
      [](corio::Task<> (*sweep)(corio::Barrier&)) -> corio::Task<> {
        corio::Barrier b(2);
        std::vector<std::string> log;
        auto a = corio::create_task(arrive(b, log, "a"));
        co_await turns(1);  // a waits
        a.cancel();         // unlinked; its step comes later
        co_await sweep(b);
        co_await turns(2);  // a leaves
        auto x = corio::create_task(arrive(b, log, "x"));
        auto y = corio::create_task(arrive(b, log, "y"));
        co_await turns(3);
        EXPECT_TRUE(x.done() && y.done()) << "waiting: " << b.n_waiting();
        EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled", "y:1", "x:0"}));  // y fills, x is woken
        x.cancel();
        y.cancel();
      }(sweep),
      kVirtual);
}

TEST(Barrier, AWaiterCancelledAndThenResetDoesNotUnbalanceTheNextCycle) {
  cancelled_waiter_then([](corio::Barrier& b) -> corio::Task<> { co_await b.reset(); });
}

TEST(Barrier, AWaiterCancelledAndThenCountedByTheFillingArrivalDoesNotUnbalanceTheNextCycle) {
  // As in asyncio, the cancelled waiter still counts until its step runs: this arrival fills.
  cancelled_waiter_then([](corio::Barrier& b) -> corio::Task<> { EXPECT_EQ(co_await b.wait(), 1u); });
}

// A party whose frame is destroyed while parked (a loop closed under it) leaves: its arrival is undone, so
// the barrier still needs `parties` live arrivals (it stayed counted: a lone party then passed a two-party
// barrier). A generator thrown away while its task is parked in the barrier is not such a party: its frame
// lives on until the body yields, so it still waits, and passes with the next arrival.
corio::AsyncGenerator<int> arrive_in_generator(corio::Barrier& b) {
  co_yield static_cast<int>(co_await b.wait());
}

TEST(Barrier, APartyDestroyedWhileParkedLeaves) {
  corio::Barrier b(2);
  corio::run(
      [](corio::Barrier& b) -> corio::Task<> {
        auto gen = std::make_unique<corio::AsyncGenerator<int>>(arrive_in_generator(b));
        auto run_gen = [](corio::AsyncGenerator<int>& g) -> corio::Task<> {
          EXPECT_THROW((void)co_await g.next(), corio::RuntimeError);  // destroyed under it
        };
        auto consumer = corio::create_task(run_gen(*gen));
        co_await turns(2);
        EXPECT_EQ(b.n_waiting(), 1u);
        gen.reset();  // its body runs on: the party still waits
        co_await turns(2);
        EXPECT_EQ(b.n_waiting(), 1u);
        EXPECT_FALSE(consumer.done());
        auto second = corio::create_task(b.wait());
        EXPECT_EQ(co_await second, 1u);  // the generator's arrival was 0
        co_await consumer;               // then the generator yielded: RuntimeError
      }(b),
      kVirtual);
  // Parties destroyed with their loop leave too.
  corio_test::run_then_drop_loop([&]() -> corio::Task<> {
    (void)corio::create_task(b.wait());
    co_await turns(2);
    EXPECT_EQ(b.n_waiting(), 1u);
  });
  corio::run(
      [](corio::Barrier& b) -> corio::Task<> {
        auto lone = corio::create_task(b.wait());
        co_await turns(3);
        EXPECT_FALSE(lone.done());
        if (lone.done()) co_return;
        auto second = corio::create_task(b.wait());
        co_await second;
        co_await lone;
      }(b),
      kVirtual);
}

// A barrier destroyed under a waiting task that is then cancelled: the wait undid its arrival in the freed
// barrier (see destroyed_under_waiter.hpp).
struct OneBarrier {
  corio::Barrier b{2};
};

TEST(Barrier, DestroyedUnderAWaitingTaskThatIsThenCancelled) {
  std::vector<std::string> log;
  corio_test::destroy_under_waiting_task<OneBarrier>(
      [&](OneBarrier& p) { return corio::create_task(arrive(p.b, log, "a")); }, 1);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled", "a:cancelled", "a:cancelled"}));
}

}  // namespace
