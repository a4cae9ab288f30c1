// Semaphore and BoundedSemaphore: permits, strict FIFO (CPython #90155), cancellation, bound checks.
#include "corio/sync/semaphore.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/wait_for.hpp"

#include "common/test_util.hpp"
#include "sync/destroyed_under_waiter.hpp"

using namespace std::chrono_literals;
using corio_test::iota;
using corio_test::kVirtual;
using corio_test::now;
using corio_test::parked;
using corio_test::run_then_drop_loop;
using corio_test::turns;

namespace {

// Acquires; logs "<name>+" and keeps the permit (the test releases) or logs "<name>:cancelled".
corio::Task<> taker(corio::Semaphore& sem, std::vector<std::string>& log, std::string name) {
  try {
    co_await sem.acquire();
  } catch (const corio::CancelledError&) {
    log.push_back(name + ":cancelled");
    throw;
  }
  log.push_back(name + "+");
}

TEST(Semaphore, CountsPermits) {
  corio::run(
      []() -> corio::Task<> {
        corio::Semaphore sem(2);
        EXPECT_EQ(sem.value(), 2u);
        EXPECT_FALSE(sem.locked());
        co_await sem.acquire();
        co_await sem.acquire();
        EXPECT_EQ(sem.value(), 0u);
        EXPECT_TRUE(sem.locked());
        std::vector<std::string> log;
        auto c = corio::create_task(taker(sem, log, "c"));
        co_await turns(2);
        EXPECT_FALSE(c.done());
        sem.release();
        EXPECT_EQ(sem.value(), 0u);  // handed to c, not returned to the pool
        co_await c;
        sem.release();
        sem.release();
        EXPECT_EQ(sem.value(), 2u);
        EXPECT_FALSE(sem.locked());
        // Plain Semaphore: release above the initial value is allowed.
        sem.release();
        EXPECT_EQ(sem.value(), 3u);
        EXPECT_EQ(log, (std::vector<std::string>{"c+"}));
      }(),
      kVirtual);
}

TEST(Semaphore, ZeroInitialValueWaitsForRelease) {
  corio::run(
      []() -> corio::Task<> {
        corio::Semaphore sem(0);
        EXPECT_TRUE(sem.locked());
        std::vector<std::string> log;
        auto a = corio::create_task(taker(sem, log, "a"));
        co_await turns(2);
        EXPECT_FALSE(a.done());
        sem.release();
        co_await a;
        EXPECT_EQ(sem.value(), 0u);
      }(),
      kVirtual);
}

// CPython #90155: a task that calls acquire() while a released permit is on its way to a waiter must not
// take it; acquisitions follow the order of arrival.
TEST(Semaphore, NewcomerNeverJumpsAheadOfWaiters) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Semaphore sem(1);
        co_await sem.acquire();
        auto b = corio::create_task(taker(sem, log, "b"));
        auto c = corio::create_task(taker(sem, log, "c"));
        co_await turns(1);
        sem.release();  // to b
        EXPECT_EQ(sem.value(), 0u);
        EXPECT_TRUE(sem.locked());
        auto d = corio::create_task(taker(sem, log, "d"));  // arrives while b has not run yet
        co_await turns(2);
        EXPECT_TRUE(b.done());
        EXPECT_FALSE(c.done());
        EXPECT_FALSE(d.done());
        sem.release();
        co_await turns(2);
        EXPECT_TRUE(c.done());
        EXPECT_FALSE(d.done());
        // Several releases in one turn: each goes to the next waiter, none to a same-turn newcomer.
        auto e = corio::create_task(taker(sem, log, "e"));
        co_await turns(1);
        sem.release();
        sem.release();
        auto f = corio::create_task(taker(sem, log, "f"));
        co_await d;
        co_await e;
        co_await turns(2);
        EXPECT_FALSE(f.done());
        sem.release();
        co_await f;
        EXPECT_EQ(sem.value(), 0u);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"b+", "c+", "d+", "e+", "f+"}));
}

TEST(Semaphore, CancelledWhileWaitingLeavesThePermits) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Semaphore sem(0);
        auto a = corio::create_task(taker(sem, log, "a"));
        auto b = corio::create_task(taker(sem, log, "b"));
        co_await turns(1);
        a.cancel();
        co_await turns(1);
        EXPECT_TRUE(a.cancelled());
        EXPECT_EQ(sem.value(), 0u);
        sem.release();  // to b, the only waiter left
        co_await b;
        EXPECT_EQ(sem.value(), 0u);
        sem.release();
        EXPECT_EQ(sem.value(), 1u);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled", "b+"}));
}

TEST(Semaphore, CancelledAfterHandOverPassesThePermitOn) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Semaphore sem(0);
        auto a = corio::create_task(taker(sem, log, "a"));
        auto b = corio::create_task(taker(sem, log, "b"));
        auto c = corio::create_task(taker(sem, log, "c"));
        co_await turns(1);
        sem.release();  // to a
        sem.release();  // to b
        a.cancel();     // a's permit must reach c
        co_await turns(3);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(b.done());
        EXPECT_TRUE(c.done());
        EXPECT_FALSE(c.cancelled());
        EXPECT_EQ(sem.value(), 0u);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled", "b+", "c+"}));
}

TEST(Semaphore, CancelledAfterHandOverWithNobodyElseReturnsThePermit) {
  corio::run(
      []() -> corio::Task<> {
        corio::Semaphore sem(0);
        std::vector<std::string> log;
        auto a = corio::create_task(taker(sem, log, "a"));
        co_await turns(1);
        sem.release();
        a.cancel();
        co_await turns(1);
        EXPECT_TRUE(a.cancelled());
        EXPECT_EQ(sem.value(), 1u);
        EXPECT_FALSE(sem.locked());
        co_await sem.acquire();
        EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled"}));
      }(),
      kVirtual);
}

TEST(BoundedSemaphore, ReleaseAboveInitialValueThrows) {
  corio::run(
      []() -> corio::Task<> {
        corio::BoundedSemaphore sem(2);
        EXPECT_THROW(sem.release(), corio::Error);
        EXPECT_EQ(sem.value(), 2u);
        co_await sem.acquire();
        sem.release();
        EXPECT_THROW(sem.release(), corio::Error);
        EXPECT_EQ(sem.value(), 2u);
        co_await sem.acquire();
        co_await sem.acquire();
        // A waiter, then hand-overs: still bounded.
        std::vector<std::string> log;
        auto c = corio::create_task(taker(sem, log, "c"));
        co_await turns(1);
        sem.release();  // to c
        co_await c;
        sem.release();
        sem.release();
        EXPECT_EQ(sem.value(), 2u);
        EXPECT_THROW(sem.release(), corio::Error);
        EXPECT_EQ(sem.value(), 2u);
      }(),
      kVirtual);
}

// A BoundedSemaphore(0) never has a permit to give: release() throws even with a task waiting (as asyncio's
// ValueError; the permit was handed to the waiter, above the bound), and the waiter keeps waiting.
TEST(BoundedSemaphore, ReleaseOfABoundOfZeroThrowsEvenWithAWaiter) {
  corio::run(
      []() -> corio::Task<> {
        corio::BoundedSemaphore sem(0);
        std::vector<std::string> log;
        auto c = corio::create_task(taker(sem, log, "c"));
        co_await turns(1);
        EXPECT_THROW(sem.release(), corio::Error);
        co_await turns(2);
        EXPECT_FALSE(c.done());
        EXPECT_EQ(sem.value(), 0u);
        c.cancel();
        co_await turns(2);
        EXPECT_TRUE(c.done());
      }(),
      kVirtual);
}

TEST(BoundedSemaphore, CancelledAfterHandOverDoesNotThrowOrOverflow) {
  corio::run(
      []() -> corio::Task<> {
        corio::BoundedSemaphore sem(1);
        co_await sem.acquire();
        std::vector<std::string> log;
        auto a = corio::create_task(taker(sem, log, "a"));
        co_await turns(1);
        sem.release();  // to a
        a.cancel();     // a hands it back: value back to 1, no error
        co_await turns(1);
        EXPECT_TRUE(a.cancelled());
        EXPECT_EQ(sem.value(), 1u);
        EXPECT_THROW(sem.release(), corio::Error);
      }(),
      kVirtual);
}

// 10,000 tasks through a semaphore of 3 permits: acquisitions in order of arrival, never more than 3 inside.
template <class Sem>
void ten_thousand_waiters_served_in_order() {
  static constexpr int kN = 10'000;
  corio::run(
      []() -> corio::Task<> {
        Sem sem(3);
        std::vector<int> order;
        order.reserve(kN);
        int inside = 0;
        int max_inside = 0;
        std::vector<corio::TaskHandle<>> hs;
        hs.reserve(kN);
        for (int i = 0; i < kN; ++i)
          hs.push_back(corio::create_task(
              [](Sem& sem, std::vector<int>& order, int& inside, int& max_inside, int i) -> corio::Task<> {
                co_await sem.acquire();
                order.push_back(i);
                max_inside = std::max(max_inside, ++inside);
                co_await corio::sleep(0s);
                --inside;
                sem.release();
              }(sem, order, inside, max_inside, i)));
        for (auto& h : hs) co_await h;
        EXPECT_EQ(order, iota(kN));
        EXPECT_EQ(max_inside, 3);
        EXPECT_EQ(sem.value(), 3u);
      }(),
      kVirtual);
}

TEST(Semaphore, TenThousandWaitersServedInOrder) { ten_thousand_waiters_served_in_order<corio::Semaphore>(); }

// ---------------------------------------------------------------- BoundedSemaphore: the same waiting rules

TEST(BoundedSemaphore, TenThousandWaitersServedInOrder) {
  ten_thousand_waiters_served_in_order<corio::BoundedSemaphore>();
  // Each of the 10,000 releases above went to a waiter or back under the bound: none threw.
}

TEST(BoundedSemaphore, CancelledWhileWaitingLeavesThePermitsAndTheBound) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::BoundedSemaphore sem(1);
        co_await sem.acquire();
        auto a = corio::create_task(taker(sem, log, "a"));
        auto b = corio::create_task(taker(sem, log, "b"));
        co_await turns(1);
        a.cancel();
        co_await turns(1);
        EXPECT_TRUE(a.cancelled());
        EXPECT_EQ(sem.value(), 0u);
        EXPECT_TRUE(sem.locked());
        sem.release();  // ours, to b: a left the queue
        co_await b;
        EXPECT_FALSE(b.cancelled());
        EXPECT_EQ(sem.value(), 0u);
        sem.release();  // b's
        EXPECT_EQ(sem.value(), 1u);
        EXPECT_THROW(sem.release(), corio::Error);  // a's cancelled wait gave it no permit to return
        EXPECT_EQ(sem.value(), 1u);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled", "b+"}));
}

TEST(BoundedSemaphore, FifoAndNewcomerNeverJumpsAheadOfWaiters) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::BoundedSemaphore sem(2);
        co_await sem.acquire();
        co_await sem.acquire();
        std::vector<corio::TaskHandle<>> hs;
        for (const char* n : {"a", "b", "c"}) hs.push_back(corio::create_task(taker(sem, log, n)));
        co_await turns(1);
        sem.release();  // to a
        sem.release();  // to b
        EXPECT_EQ(sem.value(), 0u);
        hs.push_back(corio::create_task(taker(sem, log, "d")));  // arrives while a and b have not run
        co_await turns(2);
        EXPECT_TRUE(hs[0].done());
        EXPECT_TRUE(hs[1].done());
        EXPECT_FALSE(hs[2].done());
        EXPECT_FALSE(hs[3].done());
        sem.release();  // to c
        sem.release();  // to d
        for (auto& h : hs) co_await h;
        EXPECT_EQ(sem.value(), 0u);
        sem.release();
        sem.release();
        EXPECT_THROW(sem.release(), corio::Error);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a+", "b+", "c+", "d+"}));
}

// release() is not virtual: the bound lives in Semaphore, so code holding a Semaphore& cannot overfill a
// BoundedSemaphore.
TEST(BoundedSemaphore, ReleaseThroughASemaphoreReferenceIsStillBounded) {
  corio::run(
      []() -> corio::Task<> {
        corio::BoundedSemaphore bounded(2);
        corio::Semaphore& sem = bounded;
        EXPECT_THROW(sem.release(), corio::Error);
        EXPECT_EQ(sem.value(), 2u);
        co_await sem.acquire();
        sem.release();
        EXPECT_EQ(sem.value(), 2u);
        EXPECT_THROW(sem.release(), corio::Error);
        EXPECT_EQ(bounded.value(), 2u);
        // A hand-over to a waiter through the reference does not count against the bound.
        co_await sem.acquire();
        co_await sem.acquire();
        std::vector<std::string> log;
        auto c = corio::create_task(taker(sem, log, "c"));
        co_await turns(1);
        sem.release();  // to c
        co_await c;
        EXPECT_EQ(sem.value(), 0u);
        sem.release();
        sem.release();
        EXPECT_THROW(sem.release(), corio::Error);
        EXPECT_EQ(sem.value(), 2u);
        EXPECT_EQ(log, (std::vector<std::string>{"c+"}));
      }(),
      kVirtual);
}

// Waiters whose frames are destroyed while parked (their loop dropped) unlink themselves: a later release
// goes to the pool or to a live waiter, never to a dead one.
TEST(Semaphore, WaitersDestroyedWhileParkedLeaveNoTrace) {
  corio::Semaphore sem(0);
  corio_test::Log log;
  int destroyed = 0;
  run_then_drop_loop([&]() -> corio::Task<> {
    for (int i = 0; i < 3; ++i) (void)corio::create_task(parked(sem.acquire(), log, destroyed));
    co_await turns(1);
  });
  EXPECT_EQ(destroyed, 3);
  EXPECT_TRUE(log.empty());
  corio::run(
      [](corio::Semaphore& sem, corio_test::Log& log) -> corio::Task<> {
        EXPECT_TRUE(sem.locked());
        sem.release();
        EXPECT_EQ(sem.value(), 1u);  // to the pool: nobody (dead) to hand it to
        EXPECT_FALSE(sem.locked());
        co_await sem.acquire();
        auto b = corio::create_task(taker(sem, log, "b"));
        co_await turns(1);
        sem.release();  // to b
        co_await turns(1);
        EXPECT_TRUE(b.done());
        EXPECT_EQ(sem.value(), 0u);
      }(sem, log),
      kVirtual);
  EXPECT_EQ(log, (corio_test::Log{"b+"}));
}

// ---------------------------------------------------------------- wait_for around acquire()

// wait_for(sem.acquire(), t): "acquired" (then holding a permit) or "timeout".
corio::Task<std::string> acquire_within(corio::Semaphore& sem, std::chrono::milliseconds t) {
  try {
    co_await corio::wait_for(sem.acquire(), t);
  } catch (const corio::TimeoutError&) {
    co_return "timeout";
  }
  co_return "acquired";
}

TEST(Semaphore, WaitForAroundAcquire) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::BoundedSemaphore sem(1);
        EXPECT_EQ(co_await acquire_within(sem, 1000ms), "acquired");  // a free permit: at once
        EXPECT_EQ(sem.value(), 0u);
        // Times out while waiting, with another waiter behind: no permit taken or lost.
        auto timed = corio::create_task(acquire_within(sem, 1000ms));
        co_await turns(2);
        auto c = corio::create_task(taker(sem, log, "c"));
        EXPECT_EQ(co_await timed, "timeout");
        EXPECT_EQ(now(), 1.0);
        EXPECT_EQ(sem.value(), 0u);
        EXPECT_FALSE(c.done());
        sem.release();  // to c, not to the timed-out acquire
        co_await turns(1);
        EXPECT_TRUE(c.done());
        EXPECT_EQ(sem.value(), 0u);
        // Granted within the timeout: returns holding the permit.
        auto releaser = corio::create_task([](corio::Semaphore& s) -> corio::Task<> {
          co_await corio::sleep(500ms);
          s.release();  // c's permit
        }(sem));
        EXPECT_EQ(co_await acquire_within(sem, 1000ms), "acquired");
        EXPECT_EQ(now(), 1.5);
        EXPECT_EQ(sem.value(), 0u);
        co_await releaser;
        sem.release();
        EXPECT_EQ(sem.value(), 1u);
        EXPECT_THROW(sem.release(), corio::Error);  // the bound held throughout
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"c+"}));
}

// The permit is handed to wait_for's inner acquire and the deadline passes before that task runs: the
// acquire was ready first, so it runs first and wait_for returns with the permit (it used to time out, the
// permit passing to the waiter behind; real clock, see the Lock test). Then the same hand-over with the
// wait cancelled from outside before the acquire runs: the permit passes on to the waiter behind.
TEST(Semaphore, WaitForReturnsThePermitHandedOverBeforeTheDeadlineWasSeen) {
  bool too_slow = false;
  std::vector<std::string> log;
  corio::run([](bool& too_slow, std::vector<std::string>& log) -> corio::Task<> {
    corio::Semaphore sem(0);
    const double deadline = now() + 0.05;  // (wait_for's comes a little later)
    auto timed = corio::create_task(acquire_within(sem, 50ms));
    if (!co_await corio_test::until_parked_at("semaphore", [&] { return timed.done(); })) {
      too_slow = true;
      co_return;
    }
    auto c = corio::create_task(taker(sem, log, "c"));
    co_await turns(1);
    if (now() >= deadline) {  // (not seen by the loop yet: see the Lock test)
      too_slow = true;
      co_return;
    }
    sem.release();  // handed to the inner acquire...
    EXPECT_EQ(sem.value(), 0u);
    corio_test::spin_past(deadline + 0.02);  // ...and the deadline passes before it runs
    EXPECT_EQ(co_await timed, "acquired");
    EXPECT_FALSE(c.done());
    sem.release();  // to c
    co_await turns(2);
    EXPECT_TRUE(c.done());
    EXPECT_EQ(sem.value(), 0u);

    auto cancelled = corio::create_task(acquire_within(sem, 3600s));
    EXPECT_TRUE(co_await corio_test::until_parked_at("semaphore", [&] { return cancelled.done(); }));
    auto d = corio::create_task(taker(sem, log, "d"));
    co_await turns(1);  // d waits behind
    sem.release();      // handed to the inner acquire, whose wait is then cancelled before it runs
    cancelled.cancel();
    EXPECT_THROW(co_await cancelled, corio::CancelledError);
    co_await turns(2);
    EXPECT_TRUE(d.done());  // the permit reached d
    EXPECT_EQ(sem.value(), 0u);
  }(too_slow, log));
  if (too_slow) GTEST_SKIP() << "the loop stalled for 50 ms before the acquire waited";
  EXPECT_EQ(log, (std::vector<std::string>{"c+", "d+"}));
}

// Destroyed after release() handed it to a waiter whose task had not run yet: ASan reported a use after free
// (see destroyed_under_waiter.hpp).
TEST(Semaphore, DestroyedAfterHandingAPermitToAWaiterThatHasNotRunYet) {
  corio_test::destroy_after_hand_over<corio::Semaphore>([] { return std::make_unique<corio::Semaphore>(0); },
                                                        false);
}

}  // namespace
