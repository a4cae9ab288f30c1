// AsyncGenerator: values in order then nullopt, exceptions through next(), RAII on destruction, awaits.
#include "corio/core/async_generator.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
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
using corio_test::kVirtual;

namespace {

corio::AsyncGenerator<int> count(int n) {
  for (int i = 0; i < n; ++i) co_yield i;
}

TEST(AsyncGenerator, YieldsInOrderThenNullopt) {
  corio::run(
      []() -> corio::Task<> {
        auto gen = count(3);
        std::vector<int> got;
        while (auto v = co_await gen.next()) got.push_back(*v);
        EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
        EXPECT_EQ(co_await gen.next(), std::nullopt);
        auto empty = count(0);
        EXPECT_EQ(co_await empty.next(), std::nullopt);
      }(),
      kVirtual);
}

corio::AsyncGenerator<std::string> throws_after_one() {
  co_yield "one";
  throw std::runtime_error("generator failed");
}

TEST(AsyncGenerator, ExceptionReachesConsumerThroughNext) {
  corio::run(
      []() -> corio::Task<> {
        auto gen = throws_after_one();
        auto first = co_await gen.next();
        CO_ASSERT(first.has_value());
        EXPECT_EQ(*first, "one");
        try {
          co_await gen.next();
          ADD_FAILURE() << "no exception";
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "generator failed");
        }
        // Finished after the exception.
        EXPECT_EQ(co_await gen.next(), std::nullopt);
      }(),
      kVirtual);
}

struct Guard {
  bool* flag;
  ~Guard() { *flag = true; }
};

corio::AsyncGenerator<int> guarded(bool* destroyed) {
  Guard g{destroyed};
  for (int i = 0;; ++i) co_yield i;
}

TEST(AsyncGenerator, DestroyingMidwayRunsFrameDestructors) {
  corio::run(
      []() -> corio::Task<> {
        bool destroyed = false;
        {
          auto gen = guarded(&destroyed);
          EXPECT_EQ(co_await gen.next(), 0);
          EXPECT_EQ(co_await gen.next(), 1);
          EXPECT_FALSE(destroyed);
        }
        EXPECT_TRUE(destroyed);

        // Move-assigning over a running generator destroys the old one too.
        bool d1 = false, d2 = false;
        auto a = guarded(&d1);
        EXPECT_EQ(co_await a.next(), 0);
        a = guarded(&d2);
        EXPECT_TRUE(d1);
        EXPECT_FALSE(d2);
        EXPECT_EQ(co_await a.next(), 0);
      }(),
      kVirtual);
}

corio::AsyncGenerator<double> ticks(int n) {
  for (int i = 0; i < n; ++i) {
    co_await corio::sleep(1s);
    co_yield corio::get_running_loop().time();
  }
}

corio::Task<int> later(int v) {
  co_await corio::sleep(500ms);
  co_return v;
}

corio::AsyncGenerator<int> awaits_tasks() {
  co_yield co_await later(1);
  co_yield co_await later(2);
}

TEST(AsyncGenerator, AwaitingInsideWorks) {
  corio::run(
      []() -> corio::Task<> {
        auto gen = ticks(3);
        std::vector<double> got;
        while (auto v = co_await gen.next()) got.push_back(*v);
        CO_ASSERT_EQ(got.size(), 3u);
        EXPECT_NEAR(got[0], 1.0, 1e-9);
        EXPECT_NEAR(got[1], 2.0, 1e-9);
        EXPECT_NEAR(got[2], 3.0, 1e-9);

        auto g2 = awaits_tasks();
        EXPECT_EQ(co_await g2.next(), 1);
        EXPECT_EQ(co_await g2.next(), 2);
        EXPECT_EQ(co_await g2.next(), std::nullopt);
        EXPECT_NEAR(corio::get_running_loop().time(), 4.0, 1e-9);
      }(),
      kVirtual);
}

TEST(AsyncGenerator, CancellingTheConsumerReachesTheGeneratorsAwait) {
  corio::run(
      []() -> corio::Task<> {
        bool destroyed = false;
        auto consumer = corio::create_task([](bool* destroyed) -> corio::Task<> {
          auto gen = [](bool* destroyed) -> corio::AsyncGenerator<int> {
            Guard g{destroyed};
            co_await corio::sleep(10s);
            co_yield 1;
          }(destroyed);
          co_await gen.next();
        }(&destroyed));
        co_await corio::sleep(1s);
        consumer.cancel();
        EXPECT_THROW(co_await consumer, corio::CancelledError);
        EXPECT_TRUE(destroyed);
        EXPECT_NEAR(corio::get_running_loop().time(), 1.0, 1e-9);
      }(),
      kVirtual);
}

}  // namespace

// Destroyed while a task is running it (suspended at an await inside its body): the body goes on to its
// next yield, then that task's next() throws RuntimeError, instead of the task never resuming (and run()
// waiting for it forever).
TEST(AsyncGenerator, DestroyedWhileATaskRunsItFailsThatTasksNext) {
  corio::run(
      []() -> corio::Task<> {
        auto ticks = []() -> corio::AsyncGenerator<int> {
          for (int i = 0;; ++i) {
            co_await corio::sleep(1s);
            co_yield i;
          }
        };
        auto gen = std::make_unique<corio::AsyncGenerator<int>>(ticks());
        auto consumer = corio::create_task([](corio::AsyncGenerator<int>& g) -> corio::Task<std::string> {
          try {
            (void)co_await g.next();  // suspended in the generator's sleep
            co_return "returned";
          } catch (const corio::RuntimeError& e) {
            co_return e.what();
          }
        }(*gen));
        co_await corio::sleep(100ms);
        gen.reset();
        EXPECT_EQ(co_await consumer, "the async generator was destroyed while this task was running it");
      }(),
      kVirtual);
}

// A second task's next() while another task is running the generator (suspended at an await inside) throws
// RuntimeError, as asyncio's anext() does; the first task still gets its value. (It used to resume the
// generator under the first task's feet: the second got the value early and the first never resumed.)
TEST(AsyncGenerator, NextWhileAnotherTaskRunsItThrows) {
  corio::run(
      []() -> corio::Task<> {
        auto ticks = []() -> corio::AsyncGenerator<int> {
          for (int i = 0; i < 3; ++i) {
            co_await corio::sleep(50ms);
            co_yield i;
          }
        };
        auto gen = ticks();
        auto first = corio::create_task(
            [](corio::AsyncGenerator<int>& g) -> corio::Task<int> { co_return *co_await g.next(); }(gen));
        co_await corio::sleep(10ms);  // first is inside the generator, at its sleep
        auto next = gen.next();
        EXPECT_THROW(co_await next, corio::RuntimeError);
        EXPECT_EQ(co_await first, 0);
        EXPECT_EQ(co_await gen.next(), 1);  // and it goes on for the next consumer
      }(),
      kVirtual);
}

// One next() awaiter is awaited once, as a Task is: awaiting it again throws InvalidStateError and leaves the
// generator where it was (it ran the generator again under the same awaiter, taking the task's reference
// a second time). Once the generator has ended (the first await was ready at once), the same.
TEST(AsyncGenerator, AwaitingTheSameNextTwiceThrowsInvalidStateError) {
  corio::run(
      []() -> corio::Task<> {
        auto gen = count(3);
        auto next = gen.next();
        EXPECT_EQ(co_await next, 0);
        EXPECT_THROW(co_await next, corio::InvalidStateError);
        EXPECT_EQ(co_await gen.next(), 1);  // the refused await did not run the generator
        EXPECT_EQ(co_await gen.next(), 2);
        auto last = gen.next();
        EXPECT_EQ(co_await last, std::nullopt);
        EXPECT_THROW(co_await last, corio::InvalidStateError);
      }(),
      kVirtual);
}

// A generator that outlives its loop, whose consumer task was suspended inside it (at a sleep) when the loop
// closed: the task is destroyed with the loop, and the generator is left mid-await. Its waiter lets go of
// the destroyed task (destroying the generator afterwards used to read the freed task: ASan saw it), and
// next() on it throws RuntimeError rather than resuming it at an await that will never complete.
static corio::AsyncGenerator<int> hourly_ticks() {
  for (int i = 0;; ++i) {
    co_await corio::sleep(1h);
    co_yield i;
  }
}

// Runs a loop until a task waits inside `gen` (at a sleep), then closes the loop, destroying that task.
static void close_a_loop_with_a_task_inside(corio::AsyncGenerator<int>& gen) {
  corio::EventLoop loop(kVirtual);
  loop.run_until_complete([](corio::AsyncGenerator<int>& g) -> corio::Task<> {
    corio::create_task([](corio::AsyncGenerator<int>& g) -> corio::Task<> { (void)co_await g.next(); }(g));
    co_await corio::sleep(10ms);  // the consumer now waits at the sleep inside the generator
  }(gen));
}

TEST(AsyncGenerator, OutlivesItsLoopWhileItsTaskWaitedInside) {
  auto gen = std::make_unique<corio::AsyncGenerator<int>>(hourly_ticks());
  close_a_loop_with_a_task_inside(*gen);  // close() destroys the consumer task
  corio::run([](corio::AsyncGenerator<int>& g) -> corio::Task<> {
    auto next = g.next();
    EXPECT_THROW(co_await next, corio::RuntimeError);
  }(*gen));
  gen.reset();
}

// The same with two generators, the outer running the inner when the loop closed: the inner's next(), in
// the outer's frame, is destroyed with it long after the task; neither touches the destroyed task.
TEST(AsyncGenerator, NestedGeneratorsOutliveTheirLoopWhileItsTaskWaitedInside) {
  auto outer = []() -> corio::AsyncGenerator<int> {
    auto inner = hourly_ticks();
    while (auto v = co_await inner.next()) co_yield *v;
  };
  auto gen = std::make_unique<corio::AsyncGenerator<int>>(outer());
  close_a_loop_with_a_task_inside(*gen);  // (the task waits inside the inner generator)
  gen.reset();                            // destroys the inner generator and its next() too
}

namespace nested_destroyed {
corio::AsyncGenerator<int> inner_sleeps() {
  co_await corio::sleep(10s);
  co_yield 1;
}
corio::AsyncGenerator<int> outer_sleeps() {
  auto g = inner_sleeps();
  while (auto v = co_await g.next()) co_yield *v;
}
corio::AsyncGenerator<int> inner_awaits(corio::TaskHandle<int> job) { co_yield co_await job; }
corio::AsyncGenerator<int> outer_awaits(corio::TaskHandle<int> job) {
  auto g = inner_awaits(std::move(job));
  while (auto v = co_await g.next()) co_yield *v;
}

// A nested generator destroyed while a task runs it (suspended inside the inner one): the task's next()
// throws RuntimeError and the task goes on as it was. The inner waiter's release marked the task
// cancelled (its next await threw CancelledError nobody asked for), and a task the inner generator was
// awaiting was cancelled, though it is not the generator's to cancel.
TEST(AsyncGenerator, ANestedGeneratorDestroyedMidAwaitLeavesTheTaskAndWhatItAwaitedAlone) {
  std::vector<std::string> log;
  bool job_cancelled = true;
  corio::run(
      [](std::vector<std::string>& log, bool& job_cancelled) -> corio::Task<> {
        std::optional<corio::AsyncGenerator<int>> g(outer_sleeps());
        auto consumer = corio::create_task(
            [](std::optional<corio::AsyncGenerator<int>>& g, std::vector<std::string>& log) -> corio::Task<> {
              try {
                (void)co_await g->next();
              } catch (const corio::RuntimeError&) {
                log.push_back("runtime error");
              }
              try {
                co_await corio::sleep(1s);
                log.push_back("slept");
              } catch (const corio::CancelledError&) {
                log.push_back("cancelled");
              }
            }(g, log));
        co_await corio::sleep(1s);
        g.reset();
        co_await consumer;

        auto job = corio::create_task([]() -> corio::Task<int> {
          co_await corio::sleep(100s);
          co_return 7;
        }());
        auto h = std::make_unique<corio::AsyncGenerator<int>>(outer_awaits(job));
        auto second = corio::create_task([](corio::AsyncGenerator<int>* g) -> corio::Task<> {
          try {
            (void)co_await g->next();
          } catch (const corio::RuntimeError&) {
          }
        }(h.get()));
        co_await corio::sleep(1s);
        h.reset();  // (the generators go once they yield: when the job is done)
        co_await second;
        job_cancelled = job.cancelled();
        const int v = co_await job;
        EXPECT_EQ(v, 7);
      }(log, job_cancelled),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"runtime error", "slept"}));
  EXPECT_FALSE(job_cancelled);
}
}  // namespace nested_destroyed

namespace cancel_then_destroyed {
corio::AsyncGenerator<int> ticks() {
  for (int i = 0;; ++i) {
    co_await corio::sleep(1h);
    co_yield i;
  }
}

// A task cancelled while suspended inside a generator, and the generator destroyed in the same turn: the
// cancellation goes on into the body (the destroyed generator's frame lives until the body yields or ends,
// here unwinding with CancelledError), and the task's next() throws that CancelledError at once, not after
// the 1 h sleep.
TEST(AsyncGenerator, ACancelThatReachedADestroyedGeneratorStillCancelsTheTask) {
  corio::run(
      []() -> corio::Task<> {
        auto& loop = corio::get_running_loop();
        auto gen = std::make_unique<corio::AsyncGenerator<int>>(ticks());
        double cancelled_at = -1;
        auto consume = [&]() -> corio::Task<> {
          try {
            (void)co_await gen->next();
          } catch (const corio::CancelledError&) {
            cancelled_at = loop.time();
            throw;
          }
        };
        auto c = corio::create_task(consume());
        co_await corio::sleep(1s);
        const double t0 = loop.time();
        c.cancel();   // reaches the sleep inside the generator
        gen.reset();  // the same turn
        EXPECT_THROW(co_await c, corio::CancelledError);
        EXPECT_EQ(cancelled_at, t0);
      }(),
      kVirtual);
}
}  // namespace cancel_then_destroyed

// An awaiter made by next() (or athrow()) and not awaited yet when its generator is destroyed: awaiting it
// throws RuntimeError; it read the freed frame (a create_task(gen.next()) whose task had not run yet, the
// asyncio habit of an anext task cancelled as its generator goes).
TEST(AsyncGenerator, AnAwaiterOfADestroyedGeneratorThrowsInsteadOfTouchingIt) {
  corio::run(
      []() -> corio::Task<> {
        corio::TaskHandle<std::optional<int>> pending;
        {
          auto gen = count(3);
          pending = corio::create_task(gen.next());
        }  // destroyed before the task ran
        try {
          (void)co_await pending;
          ADD_FAILURE() << "the awaiter of a destroyed generator returned";
        } catch (const corio::RuntimeError& e) {
          EXPECT_STREQ(e.what(), "next(): the async generator was destroyed before this was awaited");
        }
        corio::TaskHandle<std::optional<int>> cancelled;
        {
          auto gen = count(3);
          cancelled = corio::create_task(gen.next());
          cancelled.cancel();
        }
        EXPECT_THROW(co_await cancelled, corio::CancelledError);
        auto gen = count(3);
        auto held = gen.next();
        auto thrown = gen.athrow(std::runtime_error("never thrown"));
        gen = count(1);  // the first generator goes
        EXPECT_THROW(co_await held, corio::RuntimeError);
        EXPECT_THROW((void)co_await thrown, corio::RuntimeError);
        EXPECT_EQ(co_await gen.next(), 0);  // the new one is untouched
        // aclose() too: its awaiter is made when it is called, so a create_task(gen.aclose()) whose task
        // runs after the generator went throws rather than reading it.
        auto doomed = std::make_unique<corio::AsyncGenerator<int>>(count(3));
        EXPECT_EQ(co_await doomed->next(), 0);
        auto closing = corio::create_task(doomed->aclose());
        doomed.reset();
        CO_EXPECT_THROW_AS(
            co_await closing, corio::RuntimeError, e,
            EXPECT_STREQ(e.what(), "aclose(): the async generator was destroyed before this was awaited"));
      }(),
      kVirtual);
}

namespace close_and_throw {

// Sets `ran` once its body starts, then yields 1.
corio::AsyncGenerator<int> marks_ran(bool& ran) {
  ran = true;
  co_yield 1;
}

// A generator whose cleanup awaits (C++ cannot co_await in a handler, so the handler notes what came and the
// cleanup runs after it), recording what it saw.
corio::AsyncGenerator<int> with_async_cleanup(std::vector<std::string>& log) {
  bool closing = false;
  try {
    for (int i = 0;; ++i) co_yield i;
  } catch (const corio::GeneratorExit&) {
    closing = true;
  }
  if (closing) {
    log.push_back("closing");
    co_await corio::sleep(1s);  // the cleanup awaits, in the closing task
    log.push_back("cleaned up");
  }
}

TEST(AsyncGeneratorClose, AcloseThrowsGeneratorExitInAndRunsTheCleanupToItsEnd) {
  corio::run(
      []() -> corio::Task<> {
        auto& loop = corio::get_running_loop();
        std::vector<std::string> log;
        auto gen = with_async_cleanup(log);
        EXPECT_EQ(co_await gen.next(), 0);
        EXPECT_EQ(co_await gen.next(), 1);
        const double t0 = loop.time();
        co_await gen.aclose();
        EXPECT_EQ(log, (std::vector<std::string>{"closing", "cleaned up"}));
        EXPECT_DOUBLE_EQ(loop.time() - t0, 1.0);  // aclose() waited for the cleanup's sleep
        EXPECT_EQ(co_await gen.next(), std::nullopt);
        co_await gen.aclose();  // closing a closed generator does nothing
        EXPECT_EQ(log.size(), 2u);
      }(),
      kVirtual);
}

// RAII cleanup runs at aclose(), not later when the generator object goes.
TEST(AsyncGeneratorClose, AcloseRunsDestructorsOfTheBodysLocalsAtOnce) {
  corio::run(
      []() -> corio::Task<> {
        int destroyed = 0;
        auto gen = [](int& d) -> corio::AsyncGenerator<int> {
          struct Guard {
            int& d;
            ~Guard() { ++d; }
          } guard{d};
          co_yield 1;
          co_yield 2;
        }(destroyed);
        EXPECT_EQ(co_await gen.next(), 1);
        EXPECT_EQ(destroyed, 0);
        co_await gen.aclose();
        EXPECT_EQ(destroyed, 1);
      }(),
      kVirtual);
}

TEST(AsyncGeneratorClose, GeneratorExitIsNotAStdException) {
  corio::run(
      []() -> corio::Task<> {
        bool caught_as_std = false;
        auto gen = [](bool& caught) -> corio::AsyncGenerator<int> {
          try {
            co_yield 1;
            co_yield 2;
          } catch (const std::exception&) {
            caught = true;
          }
        }(caught_as_std);
        EXPECT_EQ(co_await gen.next(), 1);
        co_await gen.aclose();
        EXPECT_FALSE(caught_as_std);
        EXPECT_EQ(co_await gen.next(), std::nullopt);
      }(),
      kVirtual);
}

TEST(AsyncGeneratorClose, ABodyThatYieldsAgainMakesAcloseThrowRuntimeError) {
  corio::run(
      []() -> corio::Task<> {
        auto gen = []() -> corio::AsyncGenerator<int> {
          for (int i = 0;; ++i) {
            try {
              co_yield i;
            } catch (const corio::GeneratorExit&) {
              // ignored: goes on yielding
            }
          }
        }();
        EXPECT_EQ(co_await gen.next(), 0);
        try {
          co_await gen.aclose();
          ADD_FAILURE() << "aclose() returned";
        } catch (const corio::RuntimeError& e) {
          EXPECT_STREQ(e.what(), "async generator ignored GeneratorExit");
        }
      }(),
      kVirtual);
}

TEST(AsyncGeneratorClose, AnotherErrorFromTheCleanupComesOutOfAclose) {
  corio::run(
      []() -> corio::Task<> {
        auto gen = []() -> corio::AsyncGenerator<int> {
          bool closing = false;
          try {
            co_yield 1;
          } catch (const corio::GeneratorExit&) {
            closing = true;
          }
          if (closing) throw std::logic_error("cleanup failed");
        }();
        EXPECT_EQ(co_await gen.next(), 1);
        try {
          co_await gen.aclose();
          ADD_FAILURE() << "aclose() returned";
        } catch (const std::logic_error& e) {
          EXPECT_STREQ(e.what(), "cleanup failed");
        }
        EXPECT_EQ(co_await gen.next(), std::nullopt);
      }(),
      kVirtual);
}

TEST(AsyncGeneratorClose, AcloseOnAGeneratorThatNeverRanClosesItWithoutRunningIt) {
  corio::run(
      []() -> corio::Task<> {
        bool ran = false;
        auto gen = marks_ran(ran);
        auto closing = gen.aclose();  // lazy: nothing yet
        co_await closing;
        EXPECT_FALSE(ran);
        EXPECT_EQ(co_await gen.next(), std::nullopt);
        EXPECT_FALSE(ran);
      }(),
      kVirtual);
}

TEST(AsyncGeneratorClose, AcloseWhileAnotherTaskRunsItThrows) {
  corio::run(
      []() -> corio::Task<> {
        auto gen = []() -> corio::AsyncGenerator<int> {
          co_await corio::sleep(50ms);
          co_yield 7;
        }();
        auto first = corio::create_task(
            [](corio::AsyncGenerator<int>& g) -> corio::Task<int> { co_return *co_await g.next(); }(gen));
        co_await corio::sleep(10ms);  // first is inside the generator, at its sleep
        try {
          co_await gen.aclose();
          ADD_FAILURE() << "aclose() returned";
        } catch (const corio::RuntimeError& e) {
          EXPECT_STREQ(e.what(), "aclose(): asynchronous generator is already running");
        }
        EXPECT_EQ(co_await first, 7);
        co_await gen.aclose();  // now it can
        EXPECT_EQ(co_await gen.next(), std::nullopt);
      }(),
      kVirtual);
}

TEST(AsyncGeneratorThrow, AthrowCaughtByTheBodyReturnsWhatItYieldsNext) {
  corio::run(
      []() -> corio::Task<> {
        auto gen = []() -> corio::AsyncGenerator<std::string> {
          for (;;) {
            std::string caught;
            try {
              co_yield "value";
            } catch (const std::runtime_error& e) {
              caught = e.what();  // (no co_yield in a handler)
            }
            if (!caught.empty()) co_yield "caught " + caught;
          }
        }();
        EXPECT_EQ(co_await gen.next(), "value");
        EXPECT_EQ(co_await gen.athrow(std::runtime_error("boom")), "caught boom");
        EXPECT_EQ(co_await gen.next(), "value");
      }(),
      kVirtual);
}

TEST(AsyncGeneratorThrow, AthrowNotCaughtComesOutAndEndsTheGenerator) {
  corio::run(
      []() -> corio::Task<> {
        auto gen = count(5);
        EXPECT_EQ(co_await gen.next(), 0);
        try {
          (void)co_await gen.athrow(std::make_exception_ptr(std::out_of_range("thrown in")));
          ADD_FAILURE() << "athrow() returned";
        } catch (const std::out_of_range& e) {
          EXPECT_STREQ(e.what(), "thrown in");
        }
        EXPECT_EQ(co_await gen.next(), std::nullopt);
      }(),
      kVirtual);
}

TEST(AsyncGeneratorThrow, AthrowThatEndsTheBodyReturnsNullopt) {
  corio::run(
      []() -> corio::Task<> {
        auto gen = []() -> corio::AsyncGenerator<int> {
          try {
            co_yield 1;
          } catch (const std::runtime_error&) {
          }
        }();
        EXPECT_EQ(co_await gen.next(), 1);
        EXPECT_EQ(co_await gen.athrow(std::runtime_error("stop")), std::nullopt);
        EXPECT_EQ(co_await gen.next(), std::nullopt);
      }(),
      kVirtual);
}

TEST(AsyncGeneratorThrow, AthrowOnAGeneratorThatNeverRanThrowsAndClosesIt) {
  corio::run(
      []() -> corio::Task<> {
        bool ran = false;
        auto gen = marks_ran(ran);
        EXPECT_THROW((void)co_await gen.athrow(std::runtime_error("early")), std::runtime_error);
        EXPECT_FALSE(ran);
        EXPECT_EQ(co_await gen.next(), std::nullopt);
        // On a generator that has ended: nullopt, nothing thrown (Python 3.11 returns None).
        EXPECT_EQ(co_await gen.athrow(std::runtime_error("late")), std::nullopt);
        EXPECT_THROW((void)co_await gen.athrow(std::exception_ptr()), corio::RuntimeError);
      }(),
      kVirtual);
}

}  // namespace close_and_throw
