// gather / gather_settled: results in argument order, concurrency, structured failure handling.
#include "corio/flow/gather.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/as_completed.hpp"
#include "corio/flow/shield.hpp"
#include "corio/flow/wait.hpp"
#include "corio/flow/wait_for.hpp"

#include "common/test_util.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;
using corio_test::now;
using corio_test::value_after;

namespace {

corio::Task<std::string> string_after(std::string v, std::chrono::milliseconds d) {
  co_await corio::sleep(d);
  co_return v;
}

corio::Task<> void_after(std::chrono::milliseconds d, int* counter) {
  co_await corio::sleep(d);
  ++*counter;
}

corio::Task<int> fail_after(std::chrono::milliseconds d, std::string what) {
  co_await corio::sleep(d);
  throw std::runtime_error(what);
}

// Sleeps `d`; records in *cleaned (from its catch(CancelledError) block) that it was cancelled.
corio::Task<int> sleeper_with_cleanup(std::chrono::milliseconds d, bool* cleaned, double* cleaned_at) {
  try {
    co_await corio::sleep(d);
  } catch (const corio::CancelledError&) {
    *cleaned = true;
    if (cleaned_at) *cleaned_at = now();
    throw;
  }
  co_return 1;
}

TEST(Gather, TupleFormKeepsArgumentOrder) {
  auto r = corio::run(
      []() -> corio::Task<std::tuple<int, std::string, int>> {
        std::vector<int> finished;
        auto t = co_await corio::gather(value_after(1, 300ms, &finished), string_after("two", 100ms),
                                        value_after(3, 200ms, &finished));
        // Children finished in another order than the arguments.
        EXPECT_EQ(finished, (std::vector<int>{3, 1}));
        co_return t;
      }(),
      kVirtual);
  EXPECT_EQ(std::get<0>(r), 1);
  EXPECT_EQ(std::get<1>(r), "two");
  EXPECT_EQ(std::get<2>(r), 3);
}

TEST(Gather, VectorFormKeepsArgumentOrder) {
  auto r = corio::run(
      []() -> corio::Task<std::vector<int>> {
        std::vector<int> finished;
        std::vector<corio::Task<int>> ts;
        ts.push_back(value_after(10, 30ms, &finished));
        ts.push_back(value_after(20, 10ms, &finished));
        ts.push_back(value_after(30, 20ms, &finished));
        auto out = co_await corio::gather(std::move(ts));
        EXPECT_EQ(finished, (std::vector<int>{20, 30, 10}));
        co_return out;
      }(),
      kVirtual);
  EXPECT_EQ(r, (std::vector<int>{10, 20, 30}));
}

TEST(Gather, VoidResultsBecomeMonostate) {
  corio::run(
      []() -> corio::Task<> {
        int counter = 0;
        auto t = co_await corio::gather(void_after(10ms, &counter), value_after(7, 5ms));
        static_assert(std::is_same_v<decltype(t), std::tuple<std::monostate, int>>);
        EXPECT_EQ(std::get<1>(t), 7);
        EXPECT_EQ(counter, 1);

        std::vector<corio::Task<>> vs;
        vs.push_back(void_after(10ms, &counter));
        vs.push_back(void_after(5ms, &counter));
        auto v = co_await corio::gather(std::move(vs));
        static_assert(std::is_same_v<decltype(v), std::vector<std::monostate>>);
        EXPECT_EQ(v.size(), 2u);
        EXPECT_EQ(counter, 3);
      }(),
      kVirtual);
}

TEST(Gather, EmptyVectorGivesEmptyResult) {
  corio::run(
      []() -> corio::Task<> {
        double t0 = now();
        auto v = co_await corio::gather(std::vector<corio::Task<int>>{});
        EXPECT_TRUE(v.empty());
        auto s = co_await corio::gather_settled(std::vector<corio::Task<int>>{});
        EXPECT_TRUE(s.empty());
        EXPECT_EQ(now(), t0);
      }(),
      kVirtual);
}

TEST(Gather, NoArgumentsGivesEmptyTupleWithoutSuspending) {
  corio::run(
      []() -> corio::Task<> {
        bool turn_passed = false;
        corio::get_running_loop().call_soon([&] { turn_passed = true; });
        double t0 = now();
        auto t = co_await corio::gather();
        static_assert(std::is_same_v<decltype(t), std::tuple<>>);
        // Nothing to wait for: like awaiting asyncio's gather() (a done future), it does not yield.
        EXPECT_FALSE(turn_passed);
        EXPECT_EQ(now(), t0);
        co_await corio::sleep(0s);
        EXPECT_TRUE(turn_passed);
      }(),
      kVirtual);
}

TEST(Gather, AwaitingDescribesTheGather) {
  corio::run(
      []() -> corio::Task<> {
        auto g = corio::create_task(
            []() -> corio::Task<> {
              co_await corio::gather(value_after(1, 10ms), value_after(2, 20ms), value_after(3, 30ms));
            }(),
            "gatherer");
        auto s = corio::create_task(
            []() -> corio::Task<> {
              std::vector<corio::Task<int>> ts;
              ts.push_back(value_after(1, 10ms));
              ts.push_back(fail_after(40ms, "settled anyway"));
              (void)co_await corio::gather_settled(std::move(ts));
            }(),
            "settler");
        co_await corio::sleep(0s);  // both ran their first step: they wait in their gathers
        EXPECT_EQ(g.awaiting(), "gather of 3 (0 done)");
        EXPECT_EQ(s.awaiting(), "gather_settled of 2 (0 done)");
        co_await corio::sleep(15ms);  // the 10 ms children are done
        EXPECT_EQ(g.awaiting(), "gather of 3 (1 done)");
        EXPECT_EQ(s.awaiting(), "gather_settled of 2 (1 done)");
        std::string dump = corio::dump_tasks();
        std::string g_block = dump.substr(dump.find("Task 'gatherer'"));
        g_block = g_block.substr(0, g_block.find("Task '", 1));
        EXPECT_NE(g_block.find("awaiting: gather of 3 (1 done)"), std::string::npos) << dump;
        co_await g;
        co_await s;
        EXPECT_EQ(g.awaiting(), "done");
      }(),
      kVirtual);
}

TEST(Gather, ChildrenRunConcurrently) {
  corio::run(
      []() -> corio::Task<> {
        double t0 = now();
        std::vector<corio::Task<int>> ts;
        for (int i = 0; i < 3; ++i) ts.push_back(value_after(i, 1000ms));
        auto v = co_await corio::gather(std::move(ts));
        EXPECT_EQ(v, (std::vector<int>{0, 1, 2}));
        EXPECT_NEAR(now() - t0, 1.0, 1e-9);

        double t1 = now();
        co_await corio::gather(value_after(1, 1000ms), value_after(2, 1000ms), value_after(3, 1000ms));
        EXPECT_NEAR(now() - t1, 1.0, 1e-9);
      }(),
      kVirtual);
}

TEST(Gather, FirstExceptionCancelsSiblingsWaitsThenRethrows) {
  corio::run(
      []() -> corio::Task<> {
        bool a_cleaned = false, b_cleaned = false;
        double a_at = -1, b_at = -1;
        bool caught = false;
        try {
          co_await corio::gather(sleeper_with_cleanup(10s, &a_cleaned, &a_at), fail_after(1s, "boom"),
                                 sleeper_with_cleanup(20s, &b_cleaned, &b_at));
        } catch (const std::runtime_error& e) {
          caught = true;
          EXPECT_STREQ(e.what(), "boom");
          // The siblings' cleanup already ran: gather waited for them.
          EXPECT_TRUE(a_cleaned);
          EXPECT_TRUE(b_cleaned);
        }
        EXPECT_TRUE(caught);
        EXPECT_NEAR(a_at, 1.0, 1e-9);
        EXPECT_NEAR(b_at, 1.0, 1e-9);
        EXPECT_NEAR(now(), 1.0, 1e-9);
      }(),
      kVirtual);
}

// A sibling that takes time to clean up after the cancellation: gather must not rethrow before it ended.
corio::Task<int> slow_cleanup(bool* done_cleaning) {
  try {
    co_await corio::sleep(10s);
  } catch (const corio::CancelledError&) {
  }
  // Swallowed the cancel; keeps running for 2 more seconds.
  co_await corio::sleep(2s);
  *done_cleaning = true;
  co_return 5;
}

TEST(Gather, WaitsForSlowSiblingCleanupBeforeRethrowing) {
  corio::run(
      []() -> corio::Task<> {
        bool done_cleaning = false;
        std::vector<corio::Task<int>> ts;
        ts.push_back(slow_cleanup(&done_cleaning));
        ts.push_back(fail_after(1s, "first"));
        bool caught = false;
        try {
          co_await corio::gather(std::move(ts));
        } catch (const std::runtime_error& e) {
          caught = true;
          EXPECT_STREQ(e.what(), "first");
          EXPECT_TRUE(done_cleaning);
          EXPECT_NEAR(now(), 3.0, 1e-9);
        }
        EXPECT_TRUE(caught);
      }(),
      kVirtual);
}

TEST(Gather, FirstOfSeveralExceptionsIsRethrown) {
  corio::run(
      []() -> corio::Task<> {
        std::vector<corio::Task<int>> ts;
        ts.push_back(fail_after(2s, "second"));
        ts.push_back(fail_after(1s, "first"));
        try {
          co_await corio::gather(std::move(ts));
          ADD_FAILURE() << "gather returned";
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "first");
        }
        EXPECT_NEAR(now(), 1.0, 1e-9);
      }(),
      kVirtual);
}

TEST(Gather, CancelledChildMakesGatherThrowCancelledError) {
  corio::run(
      []() -> corio::Task<> {
        bool other_cleaned = false;
        auto victim = corio::create_task(value_after(1, 10s));
        auto other = corio::create_task(sleeper_with_cleanup(10s, &other_cleaned, nullptr));
        corio::get_running_loop().call_later(1s, [victim]() mutable { victim.cancel(); });
        bool caught = false;
        try {
          co_await corio::gather(victim, other);
        } catch (const corio::CancelledError&) {
          caught = true;
        }
        EXPECT_TRUE(caught);
        EXPECT_TRUE(victim.cancelled());
        // The remaining sibling was cancelled and waited for, like for any failure.
        EXPECT_TRUE(other_cleaned);
        EXPECT_TRUE(other.done());
        EXPECT_NEAR(now(), 1.0, 1e-9);
      }(),
      kVirtual);
}

TEST(Gather, CancellingTheAwaiterCancelsAllChildren) {
  corio::run(
      []() -> corio::Task<> {
        bool a = false, b = false;
        double a_at = -1, b_at = -1;
        bool outer_caught = false;
        auto outer = corio::create_task([](bool* a, bool* b, double* a_at, double* b_at,
                                           bool* caught) -> corio::Task<> {
          try {
            co_await corio::gather(sleeper_with_cleanup(10s, a, a_at), sleeper_with_cleanup(20s, b, b_at));
          } catch (const corio::CancelledError&) {
            *caught = true;
            // Both children ended before the gather threw.
            EXPECT_TRUE(*a);
            EXPECT_TRUE(*b);
            throw;
          }
        }(&a, &b, &a_at, &b_at, &outer_caught));
        co_await corio::sleep(2s);
        outer.cancel();
        try {
          co_await outer;
          ADD_FAILURE() << "outer was not cancelled";
        } catch (const corio::CancelledError&) {
        }
        EXPECT_TRUE(outer_caught);
        EXPECT_TRUE(outer.cancelled());
        EXPECT_NEAR(a_at, 2.0, 1e-9);
        EXPECT_NEAR(b_at, 2.0, 1e-9);
      }(),
      kVirtual);
}

// Turns its cancellation into another error (asyncio: `except CancelledError: raise ValueError`).
corio::Task<int> converts_cancellation() {
  bool cancelled = false;
  try {
    co_await corio::sleep(10s);
  } catch (const corio::CancelledError&) {
    cancelled = true;
  }
  if (cancelled) throw std::runtime_error("converted");
  co_return 0;
}

// asyncio 3.11: a task awaiting gather(child) is cancelled; the child turns the cancellation into
// ValueError; the awaiting task gets ValueError (not CancelledError) and does not end cancelled.
TEST(Gather, CancelledAwaiterGetsTheErrorTheChildTurnedItsCancellationInto) {
  corio::run(
      []() -> corio::Task<> {
        auto outer =
            corio::create_task([]() -> corio::Task<> { co_await corio::gather(converts_cancellation()); }());
        co_await corio_test::turns(2);
        outer.cancel();
        bool converted = false, cancelled = false;
        try {
          co_await outer;
        } catch (const std::runtime_error& e) {
          converted = std::string(e.what()) == "converted";
        } catch (const corio::CancelledError&) {
          cancelled = true;
        }
        EXPECT_TRUE(converted);
        EXPECT_FALSE(cancelled);
        EXPECT_FALSE(outer.cancelled());
      }(),
      kVirtual);
}

TEST(Gather, OverTaskHandles) {
  corio::run(
      []() -> corio::Task<> {
        auto h1 = corio::create_task(string_after("a", 30ms));
        auto h2 = corio::create_task(string_after("b", 10ms));
        auto t = co_await corio::gather(h1, h2);
        EXPECT_EQ(std::get<0>(t), "a");
        EXPECT_EQ(std::get<1>(t), "b");
        // The handles still give their results afterwards (gather over handles does not move them out).
        EXPECT_EQ(h1.result(), "a");
        EXPECT_EQ(h2.result(), "b");

        std::vector<corio::TaskHandle<std::string>> hs;
        hs.push_back(corio::create_task(string_after("x", 20ms)));
        hs.push_back(corio::create_task(string_after("y", 10ms)));
        auto v = co_await corio::gather(hs);
        EXPECT_EQ(v, (std::vector<std::string>{"x", "y"}));
        EXPECT_EQ(hs[0].result(), "x");
        EXPECT_EQ(hs[1].result(), "y");
      }(),
      kVirtual);
}

// A task with a cancellation pending gathers children that are all done: CancelledError, as asyncio's gather
// (it still suspends once, until its done callbacks run; tuple, vector and settled forms alike). It returned
// their results and left the cancellation to the next await. (A gather of nothing does not suspend in asyncio
// either: see NoArgumentsGivesEmptyTupleWithoutSuspending.)
TEST(Gather, OfDoneChildrenRaisesACancellationPendingOnTheAwaiter) {
  std::vector<std::string> got;
  corio::run(
      [](std::vector<std::string>& got) -> corio::Task<> {
        auto h = corio::create_task(value_after(1, 0ms));
        std::vector<corio::TaskHandle<int>> hs{h};
        co_await corio::sleep(10ms);
        for (int form = 0; form < 3; ++form) {
          corio::current_task().cancel();
          try {
            if (form == 0) (void)co_await corio::gather(h);
            if (form == 1) (void)co_await corio::gather(hs);
            if (form == 2) (void)co_await corio::gather_settled(hs);
            got.push_back("returned");
          } catch (const corio::CancelledError&) {
            got.push_back("cancelled");
          }
          corio::current_task().uncancel();
        }
        co_await corio::sleep(0s);  // nothing left pending
      }(got),
      kVirtual);
  EXPECT_EQ(got, (std::vector<std::string>{"cancelled", "cancelled", "cancelled"}));
}

corio::Task<int> flag_then_value(bool* started) {
  *started = true;
  co_await corio::sleep(1s);
  co_return 1;
}

TEST(Gather, InvalidArgumentSchedulesNothing) {
  corio::run(
      []() -> corio::Task<> {
        bool started = false;
        EXPECT_THROW(co_await corio::gather(flag_then_value(&started), corio::TaskHandle<int>{}),
                     corio::InvalidStateError);
        std::vector<corio::Task<int>> ts;
        ts.push_back(flag_then_value(&started));
        ts.push_back(corio::Task<int>{});
        EXPECT_THROW(co_await corio::gather(std::move(ts)), corio::InvalidStateError);
        std::vector<corio::TaskHandle<int>> hs(1);
        EXPECT_THROW(co_await corio::gather(hs), corio::InvalidStateError);
        co_await corio::sleep(2s);
        // No child was left running behind the failed gathers.
        EXPECT_FALSE(started);
      }(),
      kVirtual);
}

TEST(GatherSettled, ReturnsEveryOutcome) {
  corio::run(
      []() -> corio::Task<> {
        auto victim = corio::create_task(value_after(3, 10s));
        corio::get_running_loop().call_later(500ms, [victim]() mutable { victim.cancel("stop"); });
        std::vector<corio::TaskHandle<int>> hs;
        hs.push_back(corio::create_task(value_after(1, 2s)));
        hs.push_back(corio::create_task(fail_after(1s, "bad")));
        hs.push_back(victim);
        auto out = co_await corio::gather_settled(hs);
        // Waited for all, failures did not cancel the others.
        EXPECT_NEAR(now(), 2.0, 1e-9);
        CO_ASSERT_EQ(out.size(), 3u);

        EXPECT_TRUE(out[0].has_value());
        EXPECT_TRUE(static_cast<bool>(out[0]));
        EXPECT_EQ(out[0].value(), 1);
        EXPECT_EQ(out[0].error(), nullptr);

        EXPECT_FALSE(out[1].has_value());
        CO_ASSERT_NE(out[1].error(), nullptr);
        EXPECT_THROW(out[1].value(), std::runtime_error);
        try {
          std::rethrow_exception(out[1].error());
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "bad");
        }

        EXPECT_FALSE(out[2].has_value());
        EXPECT_THROW(out[2].value(), corio::CancelledError);

        std::vector<corio::Task<>> vs;
        int counter = 0;
        vs.push_back(void_after(1ms, &counter));
        auto vo = co_await corio::gather_settled(std::move(vs));
        CO_ASSERT_EQ(vo.size(), 1u);
        EXPECT_TRUE(vo[0].has_value());
        EXPECT_EQ(counter, 1);
      }(),
      kVirtual);
}

}  // namespace

// Every combinator refuses a task pending on another loop with RuntimeError, at once (waiting for it from
// here would wait for ever), as awaiting it does; asyncio: "attached to a different loop". They used to
// wait for ever.
TEST(Combinators, RefuseATaskOfAnotherLoop) {
  corio::EventLoop other;
  corio::TaskHandle<int> t = other.run_until_complete(
      []() -> corio::Task<corio::TaskHandle<int>> { co_return corio::create_task(value_after(1, 10s)); }());
  ASSERT_FALSE(t.done());
  int refused = 0;
  corio::run(
      [](corio::TaskHandle<int> t, int& refused) -> corio::Task<> {
        auto expect_refused = [&](corio::Task<> attempt) -> corio::Task<> {
          auto h = corio::create_task(std::move(attempt));
          co_await corio::sleep(1s);
          CO_ASSERT(h.done());
          try {
            h.result();
            ADD_FAILURE() << "not refused";
          } catch (const corio::RuntimeError& e) {
            EXPECT_NE(std::string(e.what()).find("different loop"), std::string::npos) << e.what();
            ++refused;
          }
        };
        std::vector<corio::TaskHandle<int>> v{t};
        co_await expect_refused(
            [](corio::TaskHandle<int> t) -> corio::Task<> { (void)co_await corio::gather(t); }(t));
        co_await expect_refused([](std::vector<corio::TaskHandle<int>> v) -> corio::Task<> {
          (void)co_await corio::gather(std::move(v));
        }(v));
        co_await expect_refused([](std::vector<corio::TaskHandle<int>> v) -> corio::Task<> {
          (void)co_await corio::gather_settled(std::move(v));
        }(v));
        co_await expect_refused([](std::vector<corio::TaskHandle<int>> v) -> corio::Task<> {
          (void)co_await corio::wait(std::move(v));
        }(v));
        co_await expect_refused(
            [](corio::TaskHandle<int> t) -> corio::Task<> { (void)co_await corio::wait_for(t, 1h); }(t));
        co_await expect_refused(
            [](corio::TaskHandle<int> t) -> corio::Task<> { (void)co_await corio::shield(t); }(t));
        co_await expect_refused([](std::vector<corio::TaskHandle<int>> v) -> corio::Task<> {
          auto gen = corio::as_completed(std::move(v));
          while (auto next = co_await gen.next()) (void)co_await *next;
        }(v));
      }(t, refused),
      kVirtual);
  EXPECT_EQ(refused, 7);
  other.close();
}
