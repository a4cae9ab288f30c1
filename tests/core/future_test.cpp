// Future<T> (asyncio.Future): set once, awaited by many, cancelled with asyncio's rules, usable wherever a
// TaskHandle is, ended by its loop's close.
#include "corio/core/future.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/gather.hpp"
#include "corio/flow/wait_for.hpp"

#include "common/test_util.hpp"
#include "log_capture.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;
using corio_test::turns;

namespace {

corio::Task<int> await_value(corio::Future<int> f) { co_return co_await f; }

corio::Task<std::string> await_and_tag(corio::Future<std::string> f, std::string tag) {
  std::string v = co_await f;
  co_return tag + ":" + v;
}

TEST(Future, SetResultWakesEveryAwaiterWithTheValue) {
  corio::run(
      []() -> corio::Task<> {
        corio::Future<std::string> f = corio::create_future<std::string>();
        EXPECT_FALSE(f.done());
        EXPECT_THROW((void)f.result(), corio::InvalidStateError);
        auto a = corio::create_task(await_and_tag(f, "a"));
        auto b = corio::create_task(await_and_tag(f, "b"));
        co_await turns(2);
        EXPECT_FALSE(a.done());
        EXPECT_EQ(a.awaiting(), "future");
        f.set_result("v");
        EXPECT_TRUE(f.done());
        EXPECT_FALSE(f.cancelled());
        EXPECT_EQ(f.result(), "v");
        EXPECT_EQ(co_await a, "a:v");
        EXPECT_EQ(co_await b, "b:v");
        EXPECT_EQ(co_await f, "v");  // done: at once
        EXPECT_THROW(f.set_result("again"), corio::InvalidStateError);
        EXPECT_THROW(f.set_exception(std::runtime_error("late")), corio::InvalidStateError);
      }(),
      kVirtual);
}

TEST(Future, SetExceptionReachesAwaitersAndResult) {
  corio::run(
      []() -> corio::Task<> {
        auto f = corio::create_future<int>();
        auto waiter = corio::create_task(await_value(f));
        co_await turns(1);
        f.set_exception(std::out_of_range("no such key"));
        try {
          (void)co_await waiter;
          ADD_FAILURE() << "no exception";
        } catch (const std::out_of_range& e) {
          EXPECT_STREQ(e.what(), "no such key");
        }
        EXPECT_THROW((void)f.result(), std::out_of_range);
        EXPECT_TRUE(f.exception() != nullptr);
        // Refused, as asyncio refuses them: a null pointer, a CancelledError (use cancel()).
        auto g = corio::create_future<int>();
        EXPECT_THROW(g.set_exception(std::exception_ptr()), corio::RuntimeError);
        EXPECT_THROW(g.set_exception(corio::CancelledError("no")), corio::RuntimeError);
        EXPECT_FALSE(g.done());
        g.set_result(1);
      }(),
      kVirtual);
}

TEST(Future, VoidFuture) {
  corio::run(
      []() -> corio::Task<> {
        corio::Future<> f = corio::create_future();
        bool woke = false;
        auto waiter = corio::create_task([](corio::Future<> f, bool& woke) -> corio::Task<> {
          co_await f;
          woke = true;
        }(f, woke));
        co_await turns(2);
        EXPECT_FALSE(woke);
        f.set_result();
        co_await waiter;
        EXPECT_TRUE(woke);
      }(),
      kVirtual);
}

// cancel() reads done and cancelled at once (so `if (!f.done()) f.set_result(v)` is safe), and every awaiter
// gets CancelledError with the message; done callbacks run.
TEST(Future, CancelEndsItForEveryAwaiter) {
  corio::run(
      []() -> corio::Task<> {
        auto f = corio::create_future<int>();
        auto a = corio::create_task(await_value(f));
        auto b = corio::create_task(await_value(f));
        int callbacks = 0;
        f.add_done_callback([&callbacks](corio::TaskHandle<int> h) {
          EXPECT_TRUE(h.cancelled());
          ++callbacks;
        });
        co_await turns(1);
        EXPECT_TRUE(f.cancel("stop"));
        EXPECT_TRUE(f.done());
        EXPECT_TRUE(f.cancelled());
        EXPECT_FALSE(f.cancel("again"));
        EXPECT_THROW(f.set_result(1), corio::InvalidStateError);
        try {
          (void)f.result();
          ADD_FAILURE() << "result() of a cancelled future returned";
        } catch (const corio::CancelledError& e) {
          EXPECT_EQ(e.message(), "stop");
        }
        EXPECT_THROW((void)f.exception(), corio::CancelledError);
        for (auto* t : {&a, &b}) {
          try {
            (void)co_await *t;
            ADD_FAILURE() << "an awaiter of a cancelled future returned";
          } catch (const corio::CancelledError& e) {
            EXPECT_EQ(e.message(), "stop");
          }
        }
        EXPECT_EQ(callbacks, 1);
        EXPECT_EQ(f.uncancel(), 0);
        EXPECT_TRUE(f.cancelled());  // a future's cancellation is not withdrawn
      }(),
      kVirtual);
}

// As asyncio: cancelling a task that awaits a future cancels the future, so its other awaiters see
// CancelledError too.
TEST(Future, CancellingAnAwaitingTaskCancelsTheFuture) {
  corio::run(
      []() -> corio::Task<> {
        auto f = corio::create_future<int>();
        auto a = corio::create_task(await_value(f));
        auto b = corio::create_task(await_value(f));
        co_await turns(1);
        a.cancel("from a");
        EXPECT_THROW((void)co_await a, corio::CancelledError);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(f.cancelled());
        try {
          (void)co_await b;
          ADD_FAILURE() << "b returned";
        } catch (const corio::CancelledError& e) {
          EXPECT_EQ(e.message(), "from a");
        }
      }(),
      kVirtual);
}

TEST(Future, WaitForTimesOutAndCancelsIt) {
  corio::run(
      []() -> corio::Task<> {
        auto& loop = corio::get_running_loop();
        auto f = corio::create_future<int>();
        const double t0 = loop.time();
        EXPECT_THROW((void)co_await corio::wait_for(f, 5s), corio::TimeoutError);
        EXPECT_DOUBLE_EQ(loop.time() - t0, 5.0);
        EXPECT_TRUE(f.cancelled());
        auto g = corio::create_future<int>();
        loop.call_later(1.0, [g]() mutable { g.set_result(7); });
        EXPECT_EQ(co_await corio::wait_for(g, 5s), 7);
      }(),
      kVirtual);
}

TEST(Future, GatherOfFutures) {
  corio::run(
      []() -> corio::Task<> {
        auto& loop = corio::get_running_loop();
        auto f = corio::create_future<int>();
        auto g = corio::create_future<std::string>();
        loop.call_later(2.0, [f]() mutable { f.set_result(1); });
        loop.call_later(1.0, [g]() mutable { g.set_result("two"); });
        auto [x, y] = co_await corio::gather(f, g);
        EXPECT_EQ(x, 1);
        EXPECT_EQ(y, "two");
        // A gather cancelled from outside cancels its pending futures, which end and let it end.
        auto h = corio::create_future<int>();
        auto k = corio::create_future<int>();
        auto gathering = corio::create_task([](corio::Future<int> h, corio::Future<int> k) -> corio::Task<> {
          (void)co_await corio::gather(h, k);
        }(h, k));
        co_await turns(2);
        gathering.cancel();
        EXPECT_THROW(co_await gathering, corio::CancelledError);
        EXPECT_TRUE(h.cancelled());
        EXPECT_TRUE(k.cancelled());
        // One future failed already: gather cancels the other and rethrows.
        auto bad = corio::create_future<int>();
        auto other = corio::create_future<int>();
        bad.set_exception(std::runtime_error("bad"));
        EXPECT_THROW((void)co_await corio::gather(bad, other), std::runtime_error);
        EXPECT_TRUE(other.cancelled());
      }(),
      kVirtual);
}

// From another thread: a Future handle (its count is not atomic) is made, copied and dropped on the loop's
// thread only; the thread posts a callback that reaches the future through the loop thread's own data (here
// the awaiting frame's Future, alive while it waits; a map from request id to Future in real code).
TEST(Future, SetFromAnotherThreadThroughCallSoonThreadsafe) {
  corio::run([]() -> corio::Task<> {
    auto& loop = corio::get_running_loop();
    corio::Future<int> f = corio::create_future<int>();
    corio::Future<int>* target = &f;
    std::thread t([&loop, target] { loop.call_soon_threadsafe([target] { target->set_result(42); }); });
    EXPECT_EQ(co_await f, 42);
    t.join();
  }());
}

TEST(Future, PendingWhenTheLoopClosesEndsCancelled) {
  corio::Future<int> kept;
  std::optional<corio::TaskHandle<int>> waiter;
  {
    corio::EventLoop loop;
    loop.run_until_complete(
        [](corio::Future<int>& kept, std::optional<corio::TaskHandle<int>>& waiter) -> corio::Task<> {
          kept = corio::create_future<int>();
          waiter = corio::create_task(await_value(kept));
          co_await turns(1);
        }(kept, waiter));
  }  // closed with the future pending and a task awaiting it
  EXPECT_TRUE(kept.done());
  EXPECT_TRUE(kept.cancelled());
  EXPECT_THROW(kept.set_result(1), corio::InvalidStateError);
  EXPECT_TRUE(waiter->cancelled());
  // Cancelled, then the loop closed before the turn it was due to end on: it keeps its own message.
  corio::Future<int> cancelled;
  {
    corio::EventLoop loop;
    loop.run_until_complete([](corio::Future<int>& f) -> corio::Task<> {
      f = corio::create_future<int>();
      f.cancel("before close");
      co_return;
    }(cancelled));
  }
  CO_EXPECT_THROW_AS((void)cancelled.result(), corio::CancelledError, e,
                     EXPECT_EQ(e.message(), "before close"));
}

TEST(Future, OutsideALoopAndEmpty) {
  EXPECT_THROW((void)corio::create_future<int>(), corio::RuntimeError);
  corio::Future<int> empty;
  EXPECT_THROW(empty.set_result(1), corio::InvalidStateError);
  EXPECT_THROW((void)empty.done(), corio::InvalidStateError);
}

TEST(Future, AFailedFutureNobodyAskedIsReportedInDebugMode) {
  corio_test::LogCapture logs;
  corio::run(
      []() -> corio::Task<> {
        auto f = corio::create_future<int>();
        f.set_exception(std::runtime_error("lost"));
        co_return;
      }(),
      corio::RunOptions{.debug = true});
  EXPECT_EQ(logs.count("Future exception was never retrieved: lost"), 1) << logs.text();
}

}  // namespace
