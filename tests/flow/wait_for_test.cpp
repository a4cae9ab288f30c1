// wait_for: deadline, structured cancellation of the inner work, outside cancellation winning.
#include "corio/flow/wait_for.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/log.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/task_group.hpp"
#include "corio/sync/event.hpp"

#include "common/test_util.hpp"
#include "flow/fails_then_cancels.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;
using corio_test::now;
using corio_test::value_after;

namespace {

// Sleeps `d`; in its catch(CancelledError) block records that it cleaned up (and when), then rethrows.
corio::Task<int> with_cleanup(std::chrono::milliseconds d, bool* cleaned, double* cleaned_at = nullptr) {
  try {
    co_await corio::sleep(d);
  } catch (const corio::CancelledError&) {
    *cleaned = true;
    if (cleaned_at) *cleaned_at = now();
    throw;
  }
  co_return 1;
}

TEST(WaitFor, ReturnsTheValue) {
  corio::run(
      []() -> corio::Task<> {
        int v = co_await corio::wait_for(value_after(42, 1s), 5s);
        EXPECT_EQ(v, 42);
        EXPECT_NEAR(now(), 1.0, 1e-9);
        std::string s = co_await corio::wait_for([]() -> corio::Task<std::string> { co_return "now"; }(), 1s);
        EXPECT_EQ(s, "now");
        co_await corio::wait_for(corio::sleep(10ms), 1s);  // Task<void>
        EXPECT_NEAR(now(), 1.01, 1e-9);
      }(),
      kVirtual);
}

// The inner work takes time to clean up after the cancel: TimeoutError only once it has ended.
corio::Task<int> slow_cleanup(bool* cleaned) {
  bool cancelled = false;
  try {
    co_await corio::sleep(10s);
  } catch (const corio::CancelledError&) {
    cancelled = true;
  }
  if (cancelled) {
    // Cleanup that itself awaits (the cancellation was consumed by the throw), then ends cancelled.
    co_await corio::sleep(500ms);
    *cleaned = true;
    throw corio::CancelledError();
  }
  co_return 0;
}

TEST(WaitFor, TimeoutCancelsAndWaitsForInnerWork) {
  corio::run(
      []() -> corio::Task<> {
        bool cleaned = false;
        double cleaned_at = -1;
        bool timed_out = false;
        try {
          co_await corio::wait_for(with_cleanup(10s, &cleaned, &cleaned_at), 1s);
        } catch (const corio::TimeoutError&) {
          timed_out = true;
          EXPECT_TRUE(cleaned);
        }
        EXPECT_TRUE(timed_out);
        EXPECT_NEAR(cleaned_at, 1.0, 1e-9);
        EXPECT_NEAR(now(), 1.0, 1e-9);

        bool slow_cleaned = false;
        timed_out = false;
        try {
          co_await corio::wait_for(slow_cleanup(&slow_cleaned), 2s);
        } catch (const corio::TimeoutError&) {
          timed_out = true;
          EXPECT_TRUE(slow_cleaned);
          EXPECT_NEAR(now(), 3.5, 1e-9);
        }
        EXPECT_TRUE(timed_out);
      }(),
      kVirtual);
}

TEST(WaitFor, TimeoutErrorIsACorioError) {
  corio::run(
      []() -> corio::Task<> {
        EXPECT_THROW(co_await corio::wait_for(value_after(1, 2s), 1s), corio::Error);
      }(),
      kVirtual);
}

corio::Task<int> swallows_cancel() {
  try {
    co_await corio::sleep(10s);
  } catch (const corio::CancelledError&) {
    co_return 7;
  }
  co_return 0;
}

TEST(WaitFor, InnerWorkThatSwallowsTheCancelReturnsItsValue) {
  int v = corio::run(
      []() -> corio::Task<int> {
        int r = co_await corio::wait_for(swallows_cancel(), 1s);
        EXPECT_NEAR(now(), 1.0, 1e-9);
        co_return r;
      }(),
      kVirtual);
  EXPECT_EQ(v, 7);
}

corio::Task<int> outer_wait_for(corio::Task<int> inner, std::chrono::milliseconds timeout, std::string* got) {
  try {
    co_return co_await corio::wait_for(std::move(inner), timeout);
  } catch (const corio::TimeoutError&) {
    *got = "timeout";
    throw;
  } catch (const corio::CancelledError&) {
    *got = "cancelled";
    throw;
  }
}

TEST(WaitFor, OutsideCancellationWins) {
  corio::run(
      []() -> corio::Task<> {
        bool cleaned = false;
        std::string got;
        auto outer = corio::create_task(outer_wait_for(with_cleanup(10s, &cleaned), 5s, &got));
        co_await corio::sleep(1s);
        outer.cancel("outside");
        try {
          co_await outer;
          ADD_FAILURE() << "outer finished";
        } catch (const corio::CancelledError& e) {
          EXPECT_EQ(e.message(), "outside");
        }
        EXPECT_EQ(got, "cancelled");
        EXPECT_TRUE(cleaned);
        EXPECT_TRUE(outer.cancelled());
        EXPECT_NEAR(now(), 1.0, 1e-9);
      }(),
      kVirtual);
}

// The timeout and the outside cancel land in the same loop turn, in both orders.
TEST(WaitFor, OutsideCancellationWinsWhenCoincidingWithTimeout) {
  for (bool cancel_timer_first : {true, false}) {
    SCOPED_TRACE(cancel_timer_first ? "cancel timer first" : "wait_for timer first");
    corio::run(
        [](bool cancel_timer_first) -> corio::Task<> {
          bool cleaned = false;
          std::string got;
          corio::TaskHandle<int> outer;
          auto& loop = corio::get_running_loop();
          // Timers due at the same instant fire in the order they were added.
          if (cancel_timer_first) loop.call_later(1s, [&outer] { outer.cancel(); });
          outer = corio::create_task(outer_wait_for(with_cleanup(10s, &cleaned), 1s, &got));
          if (!cancel_timer_first) {
            co_await corio::sleep(0s);  // outer's first step has run: its wait_for timer is armed
            loop.call_later(1s, [&outer] { outer.cancel(); });
          }
          try {
            co_await outer;
            ADD_FAILURE() << "outer finished";
          } catch (const corio::CancelledError&) {
          }
          EXPECT_EQ(got, "cancelled");
          EXPECT_TRUE(outer.cancelled());
          EXPECT_TRUE(cleaned);
          EXPECT_NEAR(now(), 1.0, 1e-9);
        }(cancel_timer_first),
        kVirtual);
  }
}

TEST(WaitFor, ZeroTimeoutTimesOutWorkThatWouldSuspend) {
  corio::run(
      []() -> corio::Task<> {
        bool cleaned = false;
        // Never started: cancelled before its first step.
        EXPECT_THROW(co_await corio::wait_for(value_after(1, 1s), 0s), corio::TimeoutError);
        EXPECT_THROW(co_await corio::wait_for(with_cleanup(1s, &cleaned), -1s), corio::TimeoutError);
        EXPECT_FALSE(cleaned);  // (its body never ran, so neither did its cleanup)
        EXPECT_EQ(now(), 0.0);
        // An already-done handle still gives its value.
        auto h = corio::create_task(value_after(3, 0ms));
        co_await corio::sleep(0s);
        co_await corio::sleep(0s);
        CO_ASSERT(h.done());
        EXPECT_EQ(co_await corio::wait_for(h, 0s), 3);
      }(),
      kVirtual);
}

TEST(WaitFor, TaskHandleIsCancelledOnTimeout) {
  corio::run(
      []() -> corio::Task<> {
        bool cleaned = false;
        auto h = corio::create_task(with_cleanup(10s, &cleaned));
        EXPECT_THROW(co_await corio::wait_for(h, 2s), corio::TimeoutError);
        EXPECT_TRUE(h.done());
        EXPECT_TRUE(h.cancelled());
        EXPECT_TRUE(cleaned);
        EXPECT_NEAR(now(), 2.0, 1e-9);

        auto ok = corio::create_task([]() -> corio::Task<std::string> {
          co_await corio::sleep(1s);
          co_return "kept in the handle";
        }());
        EXPECT_EQ(co_await corio::wait_for(ok, 2s), "kept in the handle");
        // wait_for over a caller's handle does not move its value out.
        EXPECT_EQ(ok.result(), "kept in the handle");
      }(),
      kVirtual);
}

corio::Task<int> throws_after(std::chrono::milliseconds d) {
  co_await corio::sleep(d);
  throw std::logic_error("inner failed");
}

TEST(WaitFor, InnerExceptionPropagates) {
  corio::run(
      []() -> corio::Task<> {
        try {
          co_await corio::wait_for(throws_after(1s), 5s);
          ADD_FAILURE() << "no exception";
        } catch (const std::logic_error& e) {
          EXPECT_STREQ(e.what(), "inner failed");
        }
        EXPECT_NEAR(now(), 1.0, 1e-9);
      }(),
      kVirtual);
}

corio::Task<int> fail_after(std::chrono::milliseconds d) {
  co_await corio::sleep(d);
  throw std::runtime_error("x");
}

// wait_for(x, 10s), recording in `got` what it threw: "cancelled" or "runtime_error".
corio::Task<int> wait_recording(corio::TaskHandle<int> x, std::string& got) {
  try {
    co_return co_await corio::wait_for(x, 10s);
  } catch (const corio::CancelledError&) {
    got = "cancelled";
    throw;
  } catch (const std::runtime_error&) {
    got = "runtime_error";
    throw;
  }
}

// A TaskGroup child fails; the group cancels a sibling (or the body) that waits on that child through
// wait_for, before wait_for was told the child ended. The child, done, cannot take the cancellation: it
// stays with the waiting task, which gets CancelledError as with a plain co_await and as in asyncio >= 3.12
// (wait_for returned the child's error instead: the sibling's cleanup for cancellation did not run, and
// the error was counted twice in the ExceptionGroup).
TEST(WaitFor, ACancellationAfterTheInnerWorkEndedStaysWithTheAwaitingTask) {
  corio::run(
      []() -> corio::Task<> {
        std::string sibling, body;
        std::size_t errors = 0;
        try {
          co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Task<> {
            auto x = tg.create_task(fail_after(1s));
            tg.create_task(wait_recording(x, sibling));
            co_return;
          });
        } catch (const corio::ExceptionGroup& eg) {
          errors = eg.exceptions().size();
        }
        EXPECT_EQ(sibling, "cancelled");
        EXPECT_EQ(errors, 1u);
        errors = 0;
        try {
          co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Task<> {
            (void)co_await wait_recording(tg.create_task(fail_after(1s)), body);
          });
        } catch (const corio::ExceptionGroup& eg) {
          errors = eg.exceptions().size();
        }
        EXPECT_EQ(body, "cancelled");
        EXPECT_EQ(errors, 1u);
      }(),
      kVirtual);
}

corio::Task<int> await_handle(corio::TaskHandle<int>* h) { co_return co_await *h; }
corio::Task<int> wait_for_handle(corio::TaskHandle<int>* h) {
  co_await corio::sleep(0s);
  co_return co_await corio::wait_for(*h, 10s);
}

// a waits on b through wait_for, b on a: a.cancel() goes a -> b -> a, and the loop breaks the cycle by
// waking a with CancelledError. wait_for raised it (its inner work still running is then inevitable); it
// returned instead, and taking b's result threw InvalidStateError ("not done").
TEST(WaitFor, TwoTasksCancellingEachOtherInACycleEndCancelled) {
  corio::run(
      []() -> corio::Task<> {
        corio::TaskHandle<int> a, b;
        a = corio::create_task(wait_for_handle(&b));
        b = corio::create_task(await_handle(&a));
        co_await corio::sleep(1s);
        a.cancel();
        bool a_cancelled = false, b_cancelled = false;
        try {
          (void)co_await a;
        } catch (const corio::CancelledError&) {
          a_cancelled = true;
        }
        try {
          (void)co_await b;
        } catch (const corio::CancelledError&) {
          b_cancelled = true;
        }
        EXPECT_TRUE(a_cancelled);
        EXPECT_TRUE(b_cancelled);
      }(),
      kVirtual);
}

// Awaits a, swallowing CancelledError twice (awaiting a again after a turn), then gives up with 7.
corio::Task<int> await_handle_stubbornly(corio::TaskHandle<int>* a) {
  for (int i = 0; i < 3; ++i) {
    bool cancelled = false;
    try {
      co_return co_await *a;
    } catch (const corio::CancelledError&) {
      cancelled = true;
    }
    if (cancelled) co_await corio::sleep(0s);
  }
  co_return 7;
}
corio::Task<int> wait_for_handle_1s(corio::TaskHandle<int>* b) {
  co_await corio::sleep(0s);
  co_return co_await corio::wait_for(*b, 1s);
}

// The same cycle, broken by wait_for's timeout: it cancels b -> b's await cancels a -> a's wait_for would
// cancel b again. a's wait ends with CancelledError, as in asyncio 3.11 (a ends cancelled at 1 s, then b,
// which swallows the cancellations, returns 7). The cycle breaker woke b instead, leaving a waiting for b,
// which waited for a: neither ever ended.
TEST(WaitFor, TimeoutInACycleWhoseInnerSwallowsTheCancelEndsTheWait) {
  corio::run(
      []() -> corio::Task<> {
        corio::TaskHandle<int> a, b;
        a = corio::create_task(wait_for_handle_1s(&b));
        b = corio::create_task(await_handle_stubbornly(&a));
        co_await corio::sleep(5s);
        CO_ASSERT(a.done());
        EXPECT_TRUE(a.cancelled());
        CO_ASSERT(b.done());
        EXPECT_EQ(b.result(), 7);
      }(),
      kVirtual);
}

}  // namespace

// The inner work finishes with a value, then the awaiting task is cancelled before it resumes: wait_for
// returns the value (it may be a lock acquired, which would otherwise be held by nobody for ever) and the
// cancellation is raised at the task's next await.
TEST(WaitFor, CancelArrivingAfterTheInnerWorkFinishedKeepsItsValue) {
  corio::run(
      []() -> corio::Task<> {
        auto user = []() -> corio::Task<std::string> {
          const int v = co_await corio::wait_for(value_after(42, 10ms), 1s);
          try {
            co_await corio::sleep(0s);
          } catch (const corio::CancelledError&) {
            co_return "got " + std::to_string(v) + ", then CancelledError at the next await";
          }
          co_return "got " + std::to_string(v) + ", never cancelled";
        };
        auto t = corio::create_task(user());
        co_await corio_test::turns(3);  // t waits in wait_for; the inner work sleeps, due at now + 10 ms
        co_await corio::sleep(10ms);    // due with it, after it: this runs in the turn the inner work ends
        EXPECT_FALSE(t.done());
        t.cancel();  // t was woken by the inner work's end and has not run yet
        std::string got;
        try {
          got = co_await t;
        } catch (const corio::CancelledError&) {
          got = "wait_for raised CancelledError: the value was lost";
        }
        EXPECT_EQ(got, "got 42, then CancelledError at the next await");
      }(),
      kVirtual);
}

// A timeout beyond the nanosecond range means "no timeout", as a sleep of that length is forever: the
// conversion overflowed (UBSan: signed integer overflow; a double 1e10 s became INT64_MIN) and the
// timeout fired at once.
TEST(WaitFor, ATimeoutBeyondTheNanosecondRangeNeverFires) {
  corio::run(
      []() -> corio::Task<> {
        EXPECT_EQ(co_await corio::wait_for(value_after(7, 1s), std::chrono::seconds(10'000'000'000LL)), 7);
        EXPECT_EQ(co_await corio::wait_for(value_after(8, 1s), std::chrono::duration<double>(1e10)), 8);
        EXPECT_EQ(co_await corio::wait_for(value_after(9, 1s), std::chrono::hours(24LL * 365 * 1'000'000)),
                  9);
      }(),
      kVirtual);
}

// The awaiting task is cancelled; the inner work swallows that cancellation and returns a value: wait_for
// returns it, as asyncio >= 3.12 does (the value may be a resource the caller must release). The task
// carries on with cancelling() raised. (corio threw CancelledError and the value was lost.)
TEST(WaitFor, AnOuterCancelSwallowedByTheInnerWorkReturnsItsValue) {
  corio::run(
      []() -> corio::Task<> {
        auto swallow = []() -> corio::Task<int> {
          try {
            co_await corio::sleep(10s);
          } catch (const corio::CancelledError&) {
            co_return 42;
          }
          co_return 0;
        };
        auto outer = [&]() -> corio::Task<int> {
          const int v = co_await corio::wait_for(swallow(), 5s);
          EXPECT_EQ(corio::current_task().cancelling(), 1);
          co_return v;
        };
        auto h = corio::create_task(outer());
        co_await corio::sleep(100ms);
        h.cancel();
        const int v = co_await h;
        EXPECT_EQ(v, 42);
      }(),
      kVirtual);
}

// The inner work fails and the awaiting task is cancelled before it resumes: CancelledError, and the
// failure counts as retrieved (asyncio's wakeup takes the result first): no "never retrieved" report.
TEST(WaitFor, AFailureSeenByACancelledAwaiterIsRetrieved) {
  corio_test::expect_a_cancelled_awaiter_retrieves_the_failure(
      [](corio::Task<int> inner) -> corio::Task<> { (void)co_await corio::wait_for(std::move(inner), 10s); });
}

// Inner work woken before the deadline, whose step is still queued when the turn that finds the deadline
// passed begins, runs first (a turn runs what was ready, then the work of the timers that expired) and its
// value is returned, for a Task and for a TaskHandle, as asyncio's wait_for of a coroutine returns it. The
// timer used to cancel the inner work before its step ran: TimeoutError, and the value was lost. (Real
// clock: under virtual time the clock never moves while something is ready.)
TEST(WaitFor, InnerWorkWokenBeforeTheDeadlineWasSeenKeepsItsValue) {
  bool too_slow = false;
  corio::run([](bool& too_slow) -> corio::Task<> {
    for (bool handle_form : {false, true}) {
      SCOPED_TRACE(handle_form ? "TaskHandle" : "Task");
      corio::Event ev;
      auto inner = [](corio::Event& ev) -> corio::Task<int> {
        co_await ev.wait();
        co_return 42;
      };
      const double start = now();
      auto waker = corio::create_task([](corio::Event& ev, double start, bool& too_slow) -> corio::Task<> {
        co_await corio::sleep(0s);                  // the inner work waits on `ev` by now
        if (now() >= start + 0.1) too_slow = true;  // the loop stalled past the deadline already
        ev.set();                                   // the inner work's step is queued for the next turn...
        corio_test::spin_past(start + 0.15);        // ...which finds the deadline passed as well
      }(ev, start, too_slow));
      int v = -1;
      try {
        if (handle_form)
          v = co_await corio::wait_for(corio::create_task(inner(ev)), 100ms);
        else
          v = co_await corio::wait_for(inner(ev), 100ms);
      } catch (const corio::TimeoutError&) {
      }
      co_await waker;
      if (too_slow) co_return;
      EXPECT_EQ(v, 42);
    }
  }(too_slow));
  if (too_slow) GTEST_SKIP() << "the loop stalled for 100 ms before the inner work was woken";
}
