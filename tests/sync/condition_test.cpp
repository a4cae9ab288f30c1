// Condition: wait/notify under the lock; cancellation keeps the lock re-acquired and passes notifications on.
#include "corio/sync/condition.hpp"

#include <gtest/gtest.h>

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
#include "corio/sync/lock.hpp"

#include "common/test_util.hpp"
#include "sync/destroyed_under_waiter.hpp"

using namespace std::chrono_literals;
using corio_test::iota;
using corio_test::kVirtual;
using corio_test::run_then_drop_loop;
using corio_test::turns;

namespace {

// acquire; wait once; log "<name>" (or "<name>:cancelled:locked=<0|1>"); release.
corio::Task<> waiter(corio::Condition& cv, std::vector<std::string>& log, std::string name) {
  co_await cv.lock().acquire();
  try {
    co_await cv.wait();
  } catch (const corio::CancelledError&) {
    log.push_back(name + ":cancelled:locked=" + (cv.lock().locked() ? "1" : "0"));
    cv.lock().release();
    throw;
  }
  log.push_back(name);
  EXPECT_TRUE(cv.lock().locked());
  cv.lock().release();
}

TEST(Condition, NotifyWakesOneAtATimeInFifoOrder) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        std::vector<corio::TaskHandle<>> hs;
        for (const char* n : {"a", "b", "c"}) hs.push_back(corio::create_task(waiter(cv, log, n)));
        co_await turns(2);
        EXPECT_FALSE(lock.locked());  // every waiter released it while waiting
        EXPECT_TRUE(log.empty());

        co_await lock.acquire();
        cv.notify();
        co_await turns(2);
        EXPECT_TRUE(log.empty());  // the woken waiter needs the lock first
        lock.release();
        co_await turns(2);
        EXPECT_EQ(log, (std::vector<std::string>{"a"}));

        co_await lock.acquire();
        cv.notify(5);  // more than wait: wakes the two left
        lock.release();
        for (auto& h : hs) co_await h;
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(Condition, NotifyAll) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        std::vector<corio::TaskHandle<>> hs;
        for (const char* n : {"a", "b", "c", "d"}) hs.push_back(corio::create_task(waiter(cv, log, n)));
        co_await turns(1);
        co_await lock.acquire();
        cv.notify_all();
        lock.release();
        for (auto& h : hs) co_await h;
        EXPECT_FALSE(lock.locked());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b", "c", "d"}));
}

TEST(Condition, WaitAndNotifyWithoutTheLockThrow) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        EXPECT_THROW(cv.notify(), corio::RuntimeError);
        EXPECT_THROW(cv.notify_all(), corio::RuntimeError);
        bool threw = false;
        try {
          co_await cv.wait();
        } catch (const corio::RuntimeError&) {
          threw = true;
        }
        EXPECT_TRUE(threw);
        EXPECT_FALSE(lock.locked());
        EXPECT_EQ(&cv.lock(), &lock);
      }(),
      kVirtual);
}

TEST(Condition, WaitForPredicate) {
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        int value = 0;
        int checks = 0;
        auto w = corio::create_task([](corio::Condition& cv, int& value, int& checks) -> corio::Task<int> {
          co_await cv.lock().acquire();
          bool ok = co_await cv.wait_for([&] {
            ++checks;
            return value >= 3;
          });
          EXPECT_TRUE(ok);
          int seen = value;
          cv.lock().release();
          co_return seen;
        }(cv, value, checks));
        for (int i = 0; i < 3; ++i) {
          co_await turns(1);
          co_await lock.acquire();
          ++value;
          cv.notify();
          lock.release();
        }
        EXPECT_EQ(co_await w, 3);
        EXPECT_EQ(checks, 4);  // once at first, once per notification
      }(),
      kVirtual);
}

TEST(Condition, CancelledWhileWaitingReacquiresTheLock) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        auto a = corio::create_task(waiter(cv, log, "a"));
        co_await turns(1);
        EXPECT_FALSE(lock.locked());
        co_await lock.acquire();  // a cannot get the lock back while we hold it
        a.cancel();
        co_await turns(3);
        EXPECT_FALSE(a.done());  // cancelled, but waiting for the lock before it may throw
        EXPECT_TRUE(log.empty());
        lock.release();
        co_await turns(2);
        EXPECT_TRUE(a.cancelled());
        EXPECT_FALSE(lock.locked());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled:locked=1"}));
}

TEST(Condition, CancelledWhileReacquiringStillReacquires) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        auto a = corio::create_task(waiter(cv, log, "a"));
        co_await turns(1);
        co_await lock.acquire();
        cv.notify();
        co_await turns(2);  // a is now waiting for the lock
        EXPECT_FALSE(a.done());
        a.cancel();
        co_await turns(2);
        EXPECT_FALSE(a.done());
        lock.release();
        co_await turns(2);
        EXPECT_TRUE(a.cancelled());
        EXPECT_FALSE(lock.locked());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled:locked=1"}));
}

TEST(Condition, NotifiedThenCancelledPassesTheNotificationOn) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        auto a = corio::create_task(waiter(cv, log, "a"));
        auto b = corio::create_task(waiter(cv, log, "b"));
        auto c = corio::create_task(waiter(cv, log, "c"));
        co_await turns(1);
        co_await lock.acquire();
        cv.notify();  // a is notified...
        a.cancel();   // ...and cancelled before it runs: b must get the notification
        lock.release();
        co_await turns(4);
        EXPECT_TRUE(a.cancelled());
        co_await b;
        EXPECT_FALSE(c.done());  // only one notification was sent
        co_await lock.acquire();
        cv.notify();
        lock.release();
        co_await c;
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled:locked=1", "b", "c"}));
}

// The notification reached the waiter, which then was cancelled while it re-acquired the lock: it throws
// CancelledError (with the lock held), so the notification must go to the next waiter (asyncio notifies
// another waiter whenever wait() raises).
TEST(Condition, NotifiedThenCancelledWhileReacquiringPassesTheNotificationOn) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        auto a = corio::create_task(waiter(cv, log, "a"));
        auto b = corio::create_task(waiter(cv, log, "b"));
        co_await turns(1);
        co_await lock.acquire();
        cv.notify();        // a is notified
        co_await turns(2);  // a ran and now waits for the lock
        EXPECT_FALSE(a.done());
        a.cancel();
        co_await turns(2);
        lock.release();
        co_await turns(4);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(b.done());      // b was notified in a's place
        if (!b.done()) b.cancel();  // (on failure: do not hang the loop)
        co_await turns(2);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled:locked=1", "b"}));
}

// A task cancelled before it reaches wait() (cancel pending while it runs) still gets the lock back.
TEST(Condition, CancelPendingAtWaitStillReacquires) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        auto a = corio::create_task([](corio::Condition& cv, std::vector<std::string>& log) -> corio::Task<> {
          co_await cv.lock().acquire();
          corio::current_task().cancel();  // pending: the next suspension throws
          try {
            co_await cv.wait();
          } catch (const corio::CancelledError&) {
            log.push_back(std::string("a:cancelled:locked=") + (cv.lock().locked() ? "1" : "0"));
          }
          cv.lock().release();
        }(cv, log));
        co_await a;
        EXPECT_FALSE(lock.locked());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled:locked=1"}));
}

TEST(Condition, TenThousandWaitersNotifiedInOrder) {
  static constexpr int kN = 10'000;
  corio::run(
      []() -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        std::vector<int> order;
        order.reserve(kN);
        std::vector<corio::TaskHandle<>> hs;
        hs.reserve(kN);
        for (int i = 0; i < kN; ++i)
          hs.push_back(
              corio::create_task([](corio::Condition& cv, std::vector<int>& order, int i) -> corio::Task<> {
                co_await cv.lock().acquire();
                co_await cv.wait();
                order.push_back(i);
                cv.lock().release();
              }(cv, order, i)));
        co_await turns(1);
        co_await lock.acquire();
        cv.notify_all();
        lock.release();
        for (auto& h : hs) co_await h;
        EXPECT_EQ(order, iota(kN));
      }(),
      kVirtual);
}

// Waiters whose frames are destroyed while parked in wait() (their loop dropped) unlink themselves: a later
// notify(1) reaches the live waiter behind them, not a dead one.
TEST(Condition, WaitersDestroyedWhileParkedLeaveNoTrace) {
  corio::Lock lock;
  corio::Condition cv(lock);
  std::vector<std::string> log;
  int destroyed = 0;
  run_then_drop_loop([&]() -> corio::Task<> {
    for (const char* n : {"a", "b", "c"})
      (void)corio::create_task([](corio::Condition& cv, std::vector<std::string>& log, int& destroyed,
                                  std::string n) -> corio::Task<> {
        corio_test::FrameGuard guard{&destroyed};
        co_await waiter(cv, log, n);
      }(cv, log, destroyed, n));
    co_await turns(2);  // each took the lock, released it in wait() and parked
    EXPECT_FALSE(lock.locked());
  });
  EXPECT_EQ(destroyed, 3);
  EXPECT_TRUE(log.empty());
  corio::run(
      [](corio::Condition& cv, std::vector<std::string>& log) -> corio::Task<> {
        auto d = corio::create_task(waiter(cv, log, "d"));
        co_await turns(1);
        co_await cv.lock().acquire();
        cv.notify(1);  // must reach d
        cv.lock().release();
        co_await turns(2);
        EXPECT_TRUE(d.done());
        EXPECT_FALSE(cv.lock().locked());
      }(cv, log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"d"}));
}

// A notification given to a waiter inside a generator that is thrown away in the same turn, before the
// waiter ran: the generator's frame lives on until its body yields, so that waiter takes the notification
// (it re-acquires the lock and releases it) and the task running the generator then gets RuntimeError. The
// notification is neither lost nor given twice: the next waiter waits for a notification of its own.
// (Before, the frame was destroyed at once and the notification was passed on to the next waiter.)
corio::AsyncGenerator<int> wait_in_generator(corio::Condition& cv, std::vector<std::string>& log) {
  co_await cv.lock().acquire();
  co_await cv.wait();
  log.push_back("generator");
  cv.lock().release();
  co_yield 1;
}

TEST(Condition, ANotificationToAWaiterInADestroyedGeneratorIsTakenOnce) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        corio::Condition cv(lock);
        auto gen = std::make_unique<corio::AsyncGenerator<int>>(wait_in_generator(cv, log));
        auto run_gen = [](corio::AsyncGenerator<int>& g) -> corio::Task<> {
          EXPECT_THROW((void)co_await g.next(), corio::RuntimeError);  // destroyed under it
        };
        auto consumer = corio::create_task(run_gen(*gen));
        co_await turns(2);  // the generator's task waits in cv.wait()
        auto other = corio::create_task(waiter(cv, log, "other"));
        co_await turns(2);  // behind it
        co_await lock.acquire();
        cv.notify(1);  // to the generator's waiter, first in line
        lock.release();
        gen.reset();  // destroyed before it ran
        co_await consumer;
        co_await turns(3);
        EXPECT_FALSE(lock.locked());
        EXPECT_FALSE(other.done());  // the one notification went to the generator
        co_await lock.acquire();
        cv.notify(1);
        lock.release();
        co_await turns(3);
        EXPECT_TRUE(other.done());
        if (!other.done()) other.cancel();
        co_await other;
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"generator", "other"}));
}

// acquire; wait once; log "woken" or "cancelled" (then touches nothing: the condition may be gone).
corio::Task<> wait_once(corio::Condition& cv, std::vector<std::string>& log) {
  co_await cv.lock().acquire();
  try {
    co_await cv.wait();
  } catch (const corio::CancelledError&) {
    log.push_back("cancelled");
    throw;
  }
  log.push_back("woken");
  cv.lock().release();
}

// A condition and its lock destroyed under a waiting task that is then cancelled: the wait re-acquired the
// freed lock (see destroyed_under_waiter.hpp).
struct LockAndCondition {
  corio::Lock lock;
  corio::Condition cv{lock};
};

TEST(Condition, DestroyedUnderAWaitingTaskThatIsThenCancelled) {
  std::vector<std::string> log;
  corio_test::destroy_under_waiting_task<LockAndCondition>(
      [&](LockAndCondition& p) { return corio::create_task(wait_once(p.cv, log)); }, 2);
  EXPECT_EQ(log, (std::vector<std::string>{"cancelled", "cancelled", "cancelled"}));
}

// ---------------------------------------------------------------- condition destroyed after a notify

// acquire `lock`; wait once on *cv; log "woken:locked=<0|1>" or "cancelled"; release. After the wait it
// touches only the lock, which outlives the condition in these tests.
corio::Task<> wait_then_use_lock(corio::Lock& lock, corio::Condition& cv, std::vector<std::string>& log) {
  co_await lock.acquire();
  try {
    co_await cv.wait();
  } catch (const corio::CancelledError&) {
    log.push_back("cancelled");
    throw;
  }
  log.push_back(std::string("woken:locked=") + (lock.locked() ? "1" : "0"));
  lock.release();
}

// Starts wait_then_use_lock in a task, lets it wait, then takes the lock and notifies it: returns the task,
// the lock still held by the caller.
corio::Task<corio::TaskHandle<>> start_and_notify(corio::Lock& lock, corio::Condition& cv,
                                                  std::vector<std::string>& log) {
  auto a = corio::create_task(wait_then_use_lock(lock, cv, log));
  co_await turns(2);  // a waits
  co_await lock.acquire();
  cv.notify();
  co_return a;
}

// Notified, then the condition is destroyed before the woken task runs (its lock lives on): the task
// re-acquires the lock and returns, as asyncio's does (there the woken wait keeps the condition alive). It
// reached the lock through the freed condition (ASan: heap-use-after-free).
TEST(Condition, DestroyedAfterANotifyBeforeTheWokenTaskRuns) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        auto cv = std::make_unique<corio::Condition>(lock);
        auto a = co_await start_and_notify(lock, *cv, log);
        lock.release();
        cv.reset();  // before a runs
        co_await a;
        EXPECT_FALSE(lock.locked());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"woken:locked=1"}));
}

// Notified, running, waiting to re-acquire the lock; then the condition is destroyed, then the task is
// cancelled: it gets the lock and CancelledError, and the notification it held has nobody to go to. It was
// passed on through the freed condition's waiter list (ASan: heap-use-after-free).
TEST(Condition, DestroyedWhileTheNotifiedTaskReacquiresThenCancelled) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        auto cv = std::make_unique<corio::Condition>(lock);
        auto a = co_await start_and_notify(lock, *cv, log);
        co_await turns(2);  // a ran and now waits for the lock
        EXPECT_FALSE(a.done());
        cv.reset();
        a.cancel();
        lock.release();
        co_await turns(3);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(lock.locked());  // a's re-acquired lock (released by nobody: its caller threw past it)
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"cancelled"}));
}

// Notified, then the condition is destroyed, then the task is cancelled, all before it runs: the lock lives
// on, so the wait re-acquires it and throws CancelledError, as asyncio's (the caller's guard or finally
// releases it). It re-acquired the lock through the freed condition (ASan: heap-use-after-free).
TEST(Condition, DestroyedAfterANotifyThenCancelledBeforeTheWokenTaskRuns) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        auto cv = std::make_unique<corio::Condition>(lock);
        auto a = co_await start_and_notify(lock, *cv, log);
        lock.release();
        cv.reset();
        a.cancel();
        co_await turns(3);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(lock.locked());  // a's re-acquired lock (released by nobody: its caller threw past it)
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"cancelled"}));
}

// The usual `async with lock: await cv.wait()` (a guard), the condition destroyed after a notify, the waiter
// cancelled before it runs while the main task holds the lock: the wait re-acquires the lock (it waits for
// main), so the guard releases the waiter's own hold, and main keeps its lock meanwhile, as in asyncio. The
// wait threw without the lock (the condition gone was taken for the lock gone too), and the guard then
// released the lock main held.
corio::Task<> guarded_wait(corio::Lock& lock, corio::Condition& cv, std::vector<std::string>& log) {
  auto guard = co_await lock.scoped();
  bool cancelled = false;
  try {
    co_await cv.wait();
  } catch (const corio::CancelledError&) {
    cancelled = true;
  }
  log.push_back(std::string(cancelled ? "cancelled" : "woken") + ":locked=" + (lock.locked() ? "1" : "0"));
  if (cancelled) throw corio::CancelledError();
}

TEST(Condition, DestroyedAfterANotifyThenCancelledKeepsMutualExclusion) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Lock lock;
        auto cv = std::make_unique<corio::Condition>(lock);
        auto t = corio::create_task(guarded_wait(lock, *cv, log));
        co_await turns(1);
        co_await lock.acquire();  // main holds the lock from here on
        cv->notify();
        cv.reset();
        t.cancel();
        co_await turns(3);
        log.push_back(std::string("main holds the lock: ") + (lock.locked() ? "1" : "0"));
        lock.release();
        co_await turns(3);
        EXPECT_TRUE(t.cancelled());
        EXPECT_FALSE(lock.locked());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"main holds the lock: 1", "cancelled:locked=1"}));
}

// The condition and its lock both destroyed after a notify, before the woken task runs (not cancelled): the
// wait cannot re-acquire a lock that is gone, and says so (RuntimeError), touching neither (ASan).
TEST(Condition, LockDestroyedAfterANotifyRaisesRuntimeError) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        auto p = std::make_unique<LockAndCondition>();
        auto a = corio::create_task(wait_once(p->cv, log));
        co_await turns(2);
        co_await p->lock.acquire();
        p->cv.notify();
        p->lock.release();
        p.reset();
        bool runtime_error = false;
        try {
          co_await a;
        } catch (const corio::RuntimeError&) {
          runtime_error = true;
        }
        EXPECT_TRUE(runtime_error);
      }(log),
      kVirtual);
  EXPECT_TRUE(log.empty());
}

}  // namespace
