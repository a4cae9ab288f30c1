// Lock: FIFO, non-reentrant; cancellation while waiting and after the hand-over; scoped() guard.
#include "corio/sync/lock.hpp"
#include "corio/sync/condition.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/log.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/wait_for.hpp"
#include "corio/sync/event.hpp"
#include "corio/sync/semaphore.hpp"

#include "common/test_util.hpp"
#include "sync/destroyed_under_waiter.hpp"

using namespace std::chrono_literals;
using corio_test::iota;
using corio_test::kVirtual;
using corio_test::Log;
using corio_test::now;
using corio_test::parked;
using corio_test::run_then_drop_loop;
using corio_test::turns;

namespace {

// Takes the lock, logs "<name>+", holds it for `hold` turns, logs "<name>-", releases.
corio::Task<> holder(corio::Lock& lock, std::vector<std::string>& log, std::string name, int hold = 1) {
  co_await lock.acquire();
  log.push_back(name + "+");
  co_await turns(hold);
  log.push_back(name + "-");
  lock.release();
}

// Waits for the lock; logs "<name>:cancelled" if cancelled (then must not hold the lock).
corio::Task<> waiter(corio::Lock& lock, std::vector<std::string>& log, std::string name) {
  try {
    co_await lock.acquire();
  } catch (const corio::CancelledError&) {
    log.push_back(name + ":cancelled");
    throw;
  }
  log.push_back(name + "+");
  lock.release();
}

TEST(Lock, AcquireReleaseFastPath) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        EXPECT_FALSE(lock.locked());
        co_await lock.acquire();
        EXPECT_TRUE(lock.locked());
        lock.release();
        EXPECT_FALSE(lock.locked());
        co_await lock.acquire();
        EXPECT_TRUE(lock.locked());
        lock.release();
      }(),
      kVirtual);
}

TEST(Lock, MutualExclusionInFifoOrder) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        std::vector<corio::TaskHandle<>> hs;
        for (const char* n : {"a", "b", "c", "d"}) hs.push_back(corio::create_task(holder(lock, log, n, 2)));
        for (auto& h : hs) co_await h;
        EXPECT_FALSE(lock.locked());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a+", "a-", "b+", "b-", "c+", "c-", "d+", "d-"}));
}

TEST(Lock, ReleaseWhenUnlockedThrowsRuntimeError) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        EXPECT_THROW(lock.release(), corio::RuntimeError);
        co_await lock.acquire();
        lock.release();
        EXPECT_THROW(lock.release(), corio::RuntimeError);
        EXPECT_FALSE(lock.locked());
      }(),
      kVirtual);
}

TEST(Lock, NotReentrant) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        co_await lock.acquire();
        // The same task acquiring again waits like anybody else (it would deadlock): observe that it
        // suspends.
        auto again = corio::create_task([](corio::Lock& l) -> corio::Task<> { co_await l.acquire(); }(lock));
        co_await turns(3);
        EXPECT_FALSE(again.done());
        // Acquiring again from this very task blocks too: prove it with a cancel from another task.
        auto self = corio::current_task();
        auto canceller = corio::create_task([](corio::TaskHandle<> t) -> corio::Task<> {
          co_await turns(2);
          t.cancel("reentry");
        }(self));
        bool cancelled = false;
        try {
          co_await lock.acquire();
        } catch (const corio::CancelledError& e) {
          cancelled = true;
          EXPECT_EQ(e.message(), "reentry");
        }
        EXPECT_TRUE(cancelled);
        self.uncancel();
        co_await canceller;
        EXPECT_TRUE(lock.locked());
        lock.release();  // handed to `again`, which releases nothing but finishes holding it
        co_await again;
        EXPECT_TRUE(lock.locked());
        lock.release();
        EXPECT_FALSE(lock.locked());
      }(),
      kVirtual);
}

TEST(Lock, NewcomerNeverJumpsAheadOfWaiters) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        co_await lock.acquire();
        auto b = corio::create_task(waiter(lock, log, "b"));
        co_await turns(1);            // b waits
        lock.release();               // handed to b, which has not run yet
        EXPECT_FALSE(lock.locked());  // (as asyncio's: see ReadsUnlockedWhileHandedToAWaiter)
        // A newcomer in the same turn must queue behind b, not take the lock.
        auto c = corio::create_task(waiter(lock, log, "c"));
        co_await b;
        co_await c;
        EXPECT_FALSE(lock.locked());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"b+", "c+"}));
}

TEST(Lock, CancelledWhileWaitingLeavesTheLockAlone) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        co_await lock.acquire();
        auto b = corio::create_task(waiter(lock, log, "b"));
        auto c = corio::create_task(waiter(lock, log, "c"));
        co_await turns(1);
        EXPECT_TRUE(b.cancel());
        co_await turns(1);
        EXPECT_TRUE(b.done());
        EXPECT_TRUE(b.cancelled());
        EXPECT_TRUE(lock.locked());  // still ours
        lock.release();              // goes to c
        co_await c;
        EXPECT_FALSE(lock.locked());
        // The only waiter cancelled: release leaves the lock free.
        co_await lock.acquire();
        auto d = corio::create_task(waiter(lock, log, "d"));
        co_await turns(1);
        d.cancel();
        co_await turns(1);
        EXPECT_TRUE(d.cancelled());
        lock.release();
        EXPECT_FALSE(lock.locked());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"b:cancelled", "c+", "d:cancelled"}));
}

TEST(Lock, CancelledAfterHandOverPassesTheLockOn) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        co_await lock.acquire();
        auto b = corio::create_task(waiter(lock, log, "b"));
        auto c = corio::create_task(waiter(lock, log, "c"));
        co_await turns(1);
        lock.release();  // handed to b...
        b.cancel();      // ...which is cancelled before it runs
        co_await turns(1);
        EXPECT_TRUE(b.cancelled());
        co_await c;  // c got the lock (no lost wake-up)
        EXPECT_FALSE(lock.locked());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"b:cancelled", "c+"}));
}

TEST(Lock, CancelledAfterHandOverWithNobodyElseFreesTheLock) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        co_await lock.acquire();
        auto b = corio::create_task(waiter(lock, log, "b"));
        co_await turns(1);
        lock.release();
        b.cancel();
        co_await turns(1);
        EXPECT_TRUE(b.cancelled());
        EXPECT_FALSE(lock.locked());  // not stuck
        co_await lock.acquire();
        lock.release();
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"b:cancelled"}));
}

TEST(Lock, CancelBeforeFirstStepWithLockFree) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        std::vector<std::string> log;
        auto b = corio::create_task(waiter(lock, log, "b"));
        b.cancel();  // before its first step
        co_await turns(1);
        EXPECT_TRUE(b.cancelled());
        EXPECT_FALSE(lock.locked());
      }(),
      kVirtual);
}

TEST(Lock, CancelPendingWhenAcquireWouldWait) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        co_await lock.acquire();
        std::vector<std::string> log;
        auto b = corio::create_task([](corio::Lock& l, std::vector<std::string>& log) -> corio::Task<> {
          corio::current_task().cancel();  // pending when it reaches acquire()
          co_await waiter(l, log, "b");
        }(lock, log));
        auto c = corio::create_task(waiter(lock, log, "c"));
        co_await turns(2);
        EXPECT_TRUE(b.cancelled());
        EXPECT_TRUE(lock.locked());
        lock.release();  // to c: b left no trace in the queue
        co_await c;
        EXPECT_FALSE(lock.locked());
        EXPECT_EQ(log, (std::vector<std::string>{"b:cancelled", "c+"}));
      }(),
      kVirtual);
}

TEST(Lock, ScopedGuardReleasesOnDestruction) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        {
          corio::LockGuard g = co_await lock.scoped();
          EXPECT_TRUE(lock.locked());
        }
        EXPECT_FALSE(lock.locked());
        {
          corio::LockGuard g = co_await lock.scoped();
          g.release();
          EXPECT_FALSE(lock.locked());
          g.release();  // idempotent
        }
        EXPECT_FALSE(lock.locked());
        {
          corio::LockGuard g1 = co_await lock.scoped();
          corio::LockGuard g2 = std::move(g1);
          EXPECT_TRUE(lock.locked());
        }
        EXPECT_FALSE(lock.locked());
        // Releases on an exception too.
        try {
          corio::LockGuard g = co_await lock.scoped();
          throw std::runtime_error("boom");
        } catch (const std::runtime_error&) {
        }
        EXPECT_FALSE(lock.locked());
        // Hand-over through guards, FIFO.
        std::vector<int> order;
        auto user = [](corio::Lock& l, std::vector<int>& order, int i) -> corio::Task<> {
          auto g = co_await l.scoped();
          order.push_back(i);
          co_await corio::sleep(0s);
        };
        std::vector<corio::TaskHandle<>> hs;
        for (int i = 0; i < 5; ++i) hs.push_back(corio::create_task(user(lock, order, i)));
        for (auto& h : hs) co_await h;
        EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
        EXPECT_FALSE(lock.locked());
      }(),
      kVirtual);
}

TEST(Lock, ScopedCancelledWhileWaitingHoldsNothing) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        co_await lock.acquire();
        auto b =
            corio::create_task([](corio::Lock& l) -> corio::Task<> { auto g = co_await l.scoped(); }(lock));
        co_await turns(1);
        lock.release();  // handed to b
        b.cancel();
        co_await turns(2);
        EXPECT_TRUE(b.cancelled());
        EXPECT_FALSE(lock.locked());
      }(),
      kVirtual);
}

TEST(Lock, TenThousandWaitersServedInOrder) {
  static constexpr int kN = 10'000;
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        std::vector<int> order;
        order.reserve(kN);
        co_await lock.acquire();
        std::vector<corio::TaskHandle<>> hs;
        hs.reserve(kN);
        for (int i = 0; i < kN; ++i)
          hs.push_back(
              corio::create_task([](corio::Lock& l, std::vector<int>& order, int i) -> corio::Task<> {
                co_await l.acquire();
                order.push_back(i);
                l.release();
              }(lock, order, i)));
        co_await turns(1);  // all wait
        lock.release();
        for (auto& h : hs) co_await h;
        EXPECT_EQ(order, iota(kN));
        EXPECT_FALSE(lock.locked());
      }(),
      kVirtual);
}

TEST(Lock, AwaitingReportsTheLock) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        co_await lock.acquire();
        auto b = corio::create_task([](corio::Lock& l) -> corio::Task<> {
          co_await l.acquire();
          l.release();
        }(lock));
        co_await turns(1);
        EXPECT_NE(b.awaiting().find("lock"), std::string::npos) << b.awaiting();
        lock.release();
        co_await b;
      }(),
      kVirtual);
}

// Waiters whose frames are destroyed while parked (their loop dropped) unlink themselves: the lock then
// frees on release and goes to a live waiter, never to a dead one.
TEST(Lock, WaitersDestroyedWhileParkedLeaveNoTrace) {
  corio::Lock lock;
  Log log;
  int destroyed = 0;
  run_then_drop_loop([&]() -> corio::Task<> {
    co_await lock.acquire();
    for (int i = 0; i < 3; ++i) (void)corio::create_task(parked(lock.acquire(), log, destroyed));
    co_await turns(1);  // all three wait
  });
  EXPECT_EQ(destroyed, 3);
  EXPECT_TRUE(log.empty());  // destroyed, never resumed
  corio::run(
      [](corio::Lock& lock, Log& log) -> corio::Task<> {
        EXPECT_TRUE(lock.locked());  // still held by the dropped loop's main task
        lock.release();
        EXPECT_FALSE(lock.locked());  // nobody (dead) to hand it to
        co_await lock.acquire();
        auto b = corio::create_task(waiter(lock, log, "b"));
        co_await turns(1);
        lock.release();  // to b, the only waiter
        co_await turns(1);
        EXPECT_TRUE(b.done());
        EXPECT_FALSE(lock.locked());
      }(lock, log),
      kVirtual);
  EXPECT_EQ(log, (Log{"b+"}));
}

// ---------------------------------------------------------------- wait_for around acquire()

// wait_for(lock.acquire(), t): "acquired" (then holding the lock) or "timeout".
corio::Task<std::string> acquire_within(corio::Lock& lock, std::chrono::milliseconds t) {
  try {
    co_await corio::wait_for(lock.acquire(), t);
  } catch (const corio::TimeoutError&) {
    co_return "timeout";
  }
  co_return "acquired";
}

TEST(Lock, WaitForAroundAcquire) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        EXPECT_EQ(co_await acquire_within(lock, 1000ms), "acquired");  // free: at once
        EXPECT_EQ(now(), 0.0);
        // Times out while waiting, with another waiter behind: the lock stays ours, the waiter behind is
        // next, and no trace of the timed-out acquire is left to be handed the lock.
        auto timed = corio::create_task(acquire_within(lock, 1000ms));
        co_await turns(2);  // its inner acquire waits
        auto c = corio::create_task(waiter(lock, log, "c"));
        EXPECT_EQ(co_await timed, "timeout");
        EXPECT_EQ(now(), 1.0);
        EXPECT_TRUE(lock.locked());
        EXPECT_FALSE(c.done());
        lock.release();  // to c, which releases
        co_await turns(1);
        EXPECT_TRUE(c.done());
        EXPECT_FALSE(lock.locked());
        // Granted within the timeout: returns holding the lock.
        co_await lock.acquire();
        auto releaser = corio::create_task([](corio::Lock& l) -> corio::Task<> {
          co_await corio::sleep(500ms);
          l.release();
        }(lock));
        EXPECT_EQ(co_await acquire_within(lock, 1000ms), "acquired");
        EXPECT_EQ(now(), 1.5);
        EXPECT_TRUE(lock.locked());
        co_await releaser;
        lock.release();
        EXPECT_FALSE(lock.locked());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"c+"}));
}

// The lock is handed to wait_for's inner acquire and the deadline passes before that task runs. The acquire
// was ready first, so it runs first (a turn runs what was ready, then the work of the expired timers, as
// asyncio's) and wait_for returns holding the lock, as asyncio's wait_for(lock.acquire()) returns True.
// It used to time out, the lock passing to the waiter behind (real clock: the grant and the timeout must
// land in one turn, which virtual time never lets happen). Then the same hand-over with the wait
// cancelled from outside before the acquire runs: the lock passes on to the waiter behind.
TEST(Lock, WaitForReturnsTheLockHandedOverBeforeTheDeadlineWasSeen) {
  bool too_slow = false;
  std::vector<std::string> log;
  corio::run([](bool& too_slow, std::vector<std::string>& log) -> corio::Task<> {
    corio::Lock lock;
    co_await lock.acquire();
    const double deadline = now() + 0.05;  // (wait_for's comes a little later)
    auto timed = corio::create_task(acquire_within(lock, 50ms));
    if (!co_await corio_test::until_parked_at("lock", [&] { return timed.done(); })) {
      too_slow = true;  // the loop stalled past the timeout before the acquire even waited
      co_return;
    }
    auto c = corio::create_task(waiter(lock, log, "c"));
    co_await turns(1);  // c waits behind
    // The clock read now is later than any the loop checked its timers with: the deadline has not been
    // seen yet, so the inner acquire is neither timed out nor being cancelled.
    if (now() >= deadline) {
      too_slow = true;
      co_return;
    }
    lock.release();                          // handed to the inner acquire...
    EXPECT_FALSE(lock.locked());             // (on its way: asyncio's reads unlocked too)
    corio_test::spin_past(deadline + 0.02);  // ...and the deadline passes before it runs
    EXPECT_EQ(co_await timed, "acquired");
    EXPECT_TRUE(lock.locked());  // held for the caller of wait_for
    EXPECT_FALSE(c.done());
    lock.release();  // to c
    co_await turns(2);
    EXPECT_TRUE(c.done());
    EXPECT_FALSE(lock.locked());

    co_await lock.acquire();
    auto cancelled = corio::create_task(acquire_within(lock, 3600s));
    EXPECT_TRUE(co_await corio_test::until_parked_at("lock", [&] { return cancelled.done(); }));
    auto d = corio::create_task(waiter(lock, log, "d"));
    co_await turns(1);  // d waits behind
    lock.release();     // handed to the inner acquire, whose wait is then cancelled before it runs
    cancelled.cancel();
    EXPECT_THROW(co_await cancelled, corio::CancelledError);
    co_await turns(2);
    EXPECT_TRUE(d.done());  // the lock reached d (which released it)
    EXPECT_FALSE(lock.locked());
  }(too_slow, log));
  if (too_slow) GTEST_SKIP() << "the loop stalled for 50 ms before the acquire waited";
  EXPECT_EQ(log, (std::vector<std::string>{"c+", "d+"}));
}

}  // namespace

// Closing a loop destroys the tasks still pending, oldest first. Here the first one's frame releases a lock
// as it goes, which wakes the second (it is put on the ready queue), and nobody holds a handle to either:
// the second must not be freed while still queued (close() read it there afterwards: a use-after-free
// that ASan reports, and a crash in the release build).
TEST(Lock, LoopClosedWhileAReleaseWakesAnotherPendingTask) {
  static corio::Lock lock;  // outlives the loop
  static int ended = 0;
  struct Count {
    ~Count() { ++ended; }
  };
  ended = 0;
  {
    corio::EventLoop loop;
    loop.run_until_complete([]() -> corio::Task<> {
      auto holder = []() -> corio::Task<> {
        Count c;
        corio::LockGuard g = co_await lock.scoped();
        co_await corio::sleep(3600s);  // still holding the lock when the loop closes
      };
      auto waiter = []() -> corio::Task<> {
        Count c;
        co_await lock.acquire();
        lock.release();
      };
      (void)corio::create_task(holder());
      co_await corio::sleep(0s);  // the holder takes the lock
      (void)corio::create_task(waiter());
      co_await corio::sleep(0s);  // the waiter waits for it
      co_await corio::sleep(0s);
      EXPECT_TRUE(lock.locked());
    }());
  }  // ~EventLoop closes it
  EXPECT_EQ(ended, 2);
  EXPECT_FALSE(lock.locked());
}

// cancel() then uncancel() while the task still waits: the waiter already took the cancellation (it left
// the lock's queue), so the task must see CancelledError, not return from acquire() without the lock (as
// asyncio: uncancel() withdraws a pending request, not one its future already carried out). The same holds
// for a Semaphore and an Event.
TEST(Lock, UncancelDoesNotWithdrawACancellationTheWaiterTook) {
  corio::run([]() -> corio::Task<> {
    corio::Lock lock;
    corio::Semaphore sem(0);
    corio::Event ev;
    co_await lock.acquire();  // held throughout
    auto outcome = [](auto wait) -> corio::Task<std::string> {
      try {
        co_await std::move(wait);
        co_return "returned";
      } catch (const corio::CancelledError&) {
        co_return "cancelled";
      }
    };
    auto a = corio::create_task(outcome(lock.acquire()));
    auto b = corio::create_task(outcome(sem.acquire()));
    auto c = corio::create_task(outcome(ev.wait()));
    co_await turns(3);  // all three wait
    for (auto* h : {&a, &b, &c}) {
      EXPECT_TRUE(h->cancel());
      EXPECT_EQ(h->uncancel(), 0);
    }
    EXPECT_EQ(co_await a, "cancelled");
    EXPECT_EQ(co_await b, "cancelled");
    EXPECT_EQ(co_await c, "cancelled");
    EXPECT_TRUE(lock.locked());
    EXPECT_EQ(sem.value(), 0u);
    lock.release();
  }());
}

// A loop closed with a task whose frame holds a lock that a later task (its child, as a structured program
// makes) was just handed: the later task is destroyed first, so its waiter passes the unused grant on while
// the lock still exists. (Oldest first, the lock went with the parent's frame and the child's waiter then
// released it: a use-after-free.)
TEST(Lock, LoopClosedWithALockInAnOlderTasksFrame) {
  {
    corio::EventLoop loop;
    auto main = [](corio::EventLoop& loop) -> corio::Task<> {
      auto parent = [](corio::EventLoop& loop) -> corio::Task<> {
        corio::Lock lock;
        co_await lock.acquire();
        auto child = [](corio::Lock& lock) -> corio::Task<> {
          co_await lock.acquire();
          lock.release();
        };
        (void)corio::create_task(child(lock));
        co_await corio::sleep(0s);  // the child waits for the lock
        lock.release();             // handed to the child, which has not run when the loop stops
        loop.stop();
        co_await corio::sleep(3600s);
      };
      co_await corio::create_task(parent(loop));
    };
    EXPECT_THROW(loop.run_until_complete(main(loop)), corio::RuntimeError);  // stopped
  }  // ~EventLoop closes it with the tasks pending
}

// release() while the lock is on its way to a woken waiter (released once already) throws RuntimeError, as
// asyncio's does (its lock reads unlocked until the waiter runs): it used to hand the lock on a second time,
// and two tasks held it at once.
TEST(Lock, ReleasedTwiceDuringAHandOverThrowsAndOneTaskHoldsIt) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        co_await lock.acquire();
        int holders = 0;
        int most = 0;
        auto waiter = [](corio::Lock& lock, int& holders, int& most) -> corio::Task<> {
          co_await lock.acquire();
          most = std::max(most, ++holders);
          co_await corio::sleep(10ms);
          --holders;
          lock.release();
        };
        auto b = corio::create_task(waiter(lock, holders, most));
        co_await turns(1);  // b waits
        lock.release();     // handed to b
        EXPECT_THROW(lock.release(), corio::RuntimeError);
        auto c = corio::create_task(waiter(lock, holders, most));
        co_await b;
        co_await c;
        EXPECT_EQ(most, 1);
        EXPECT_FALSE(lock.locked());
      }(),
      kVirtual);
}

// A guard whose lock was released by hand inside it: its destructor cannot release it again and must not
// throw (that ended the program in std::terminate); it logs the mistake instead.
TEST(Lock, GuardOfALockReleasedByHandLogsInsteadOfThrowing) {
  std::vector<std::string> lines;
  auto old = corio::set_log_handler([&](std::string_view m) { lines.emplace_back(m); });
  corio::run([]() -> corio::Task<> {
    corio::Lock lock;
    {
      corio::LockGuard g = co_await lock.scoped();
      lock.release();
    }
    EXPECT_FALSE(lock.locked());
  }());
  corio::set_log_handler(std::move(old));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("LockGuard: Lock is not acquired"), std::string::npos) << lines[0];
}

// While release() hands the lock to a waiter that has not run yet, locked() is false (asyncio's release()
// unlocks before the waiter runs): a newcomer still cannot take it, and a Condition notify() from a task
// that does not hold it throws RuntimeError.
TEST(Lock, ReadsUnlockedWhileHandedToAWaiter) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        co_await lock.acquire();
        auto waiter = [&]() -> corio::Task<> {
          co_await lock.acquire();
          EXPECT_TRUE(lock.locked());
          lock.release();
        };
        auto w = corio::create_task(waiter());
        co_await corio::sleep(0s);  // w waits for the lock
        lock.release();             // handed to w, which has not run yet
        EXPECT_FALSE(lock.locked());
        EXPECT_THROW(cv.notify(1), corio::RuntimeError);
        co_await w;
        EXPECT_FALSE(lock.locked());
      }(),
      kVirtual);
}

// Destroyed after release() handed it to a waiter whose task had not run yet: ASan reported a use after free
// (see destroyed_under_waiter.hpp).
TEST(Lock, DestroyedAfterHandingItselfToAWaiterThatHasNotRunYet) {
  corio_test::destroy_after_hand_over<corio::Lock>([] { return std::make_unique<corio::Lock>(); }, true);
}
