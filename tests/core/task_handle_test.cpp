// TaskHandle and create_task: scheduling, names, results, done callbacks and cancellation.
#include <gtest/gtest.h>

#include <corio/core/errors.hpp>
#include <corio/core/event_loop.hpp>
#include <corio/core/run.hpp>
#include <corio/core/sleep.hpp>
#include <corio/core/task.hpp>
#include <corio/core/task_handle.hpp>
#include <corio/flow/shield.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "common/test_util.hpp"
#include "core/log_capture.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;
using corio_test::Log;

namespace {

corio::Task<> set_flag(bool& flag) {
  flag = true;
  co_return;
}

corio::Task<int> value_after_sleeps(int value, int turns) {
  for (int i = 0; i < turns; ++i) co_await corio::sleep(0s);
  co_return value;
}

corio::Task<> set_flag_after(bool& flag, std::chrono::seconds delay) {
  co_await corio::sleep(delay);
  flag = true;
}

corio::Task<int> fails_after_a_turn() {
  co_await corio::sleep(0s);
  throw std::runtime_error("task failed");
  co_return 0;
}

corio::Task<> sleep_forever() { co_await corio::sleep(24h); }

// Sleeps; on cancellation logs the message, then rethrows.
corio::Task<> logging_sleeper(Log& log) {
  try {
    co_await corio::sleep(1h);
    log.push_back("woke");
  } catch (const corio::CancelledError& e) {
    log.push_back("cancelled: " + e.message());
    throw;
  }
}

corio::Task<> await_handle(corio::TaskHandle<> h) { co_await h; }

int task_number(const std::string& name) {
  EXPECT_EQ(name.rfind("Task-", 0), 0u) << name;
  return std::stoi(name.substr(5));
}

}  // namespace

// ---------------------------------------------------------------- scheduling

TEST(CreateTask, FirstStepRunsOnTheNextTurn) {
  bool started = false;
  bool started_at_create = true, started_after_turn = false;
  std::string state_before;
  corio::run([&]() -> corio::Task<> {
    corio::TaskHandle<> h = corio::create_task(set_flag(started));
    started_at_create = started;
    state_before = h.awaiting();
    EXPECT_FALSE(h.done());
    co_await corio::sleep(0s);
    started_after_turn = started;
    EXPECT_TRUE(h.done());
  }());
  EXPECT_FALSE(started_at_create);
  EXPECT_EQ(state_before, "not started");
  EXPECT_TRUE(started_after_turn);
}

TEST(CreateTask, LoopKeepsAFireAndForgetTaskAlive) {
  bool flag = false;
  corio::run(
      [&]() -> corio::Task<> {
        (void)corio::create_task(set_flag_after(flag, 5s));  // handle dropped at once
        co_await corio::sleep(10s);
      }(),
      kVirtual);
  EXPECT_TRUE(flag);
}

TEST(CreateTask, DefaultNamesAreTaskNIncreasing) {
  std::string main_name, n1, n2, custom;
  corio::run([&]() -> corio::Task<> {
    main_name = corio::current_task().get_name();
    auto h1 = corio::create_task(value_after_sleeps(1, 0));
    auto h2 = corio::create_task(value_after_sleeps(2, 0));
    auto h3 = corio::create_task(value_after_sleeps(3, 0), "worker");
    n1 = h1.get_name();
    n2 = h2.get_name();
    custom = h3.get_name();
    h1.set_name("renamed");
    EXPECT_EQ(h1.get_name(), "renamed");
    co_await h1;
    co_await h2;
    co_await h3;
    EXPECT_EQ(h1.get_name(), "renamed");  // still readable once done
  }());
  // Numbered per loop from 1, one number per task (main is run()'s first task), as asyncio's counter.
  EXPECT_EQ(main_name, "Task-1");
  EXPECT_EQ(n1, "Task-2");
  EXPECT_EQ(n2, "Task-3");
  EXPECT_EQ(custom, "worker");
}

// asyncio keeps an empty name given to set_name(); only create_task's default (no name) makes "Task-N".
TEST(CreateTask, SetNameKeepsAnEmptyName) {
  std::string before, after;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task(value_after_sleeps(1, 0));
    before = h.get_name();
    h.set_name("");
    after = h.get_name();
    co_await h;
  }());
  EXPECT_GT(task_number(before), 0);
  EXPECT_EQ(after, "");
}

TEST(CreateTask, OutsideALoopThrowsRuntimeError) {
  EXPECT_THROW((void)corio::create_task(value_after_sleeps(1, 0)), corio::RuntimeError);
}

// ---------------------------------------------------------------- results

TEST(TaskHandle, AwaitYieldsTheValueAndCanBeRepeated) {
  int a = 0, b = 0, c = 0;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task(value_after_sleeps(42, 3));
    a = co_await h;
    b = co_await h;  // a handle may be awaited any number of times
    c = h.result();
  }());
  EXPECT_EQ(a, 42);
  EXPECT_EQ(b, 42);
  EXPECT_EQ(c, 42);
}

TEST(TaskHandle, ResultOfAPendingTaskThrowsInvalidState) {
  bool result_threw = false, exception_threw = false;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task(value_after_sleeps(1, 2));
    try {
      (void)h.result();
    } catch (const corio::InvalidStateError&) {
      result_threw = true;
    }
    try {
      (void)h.exception();
    } catch (const corio::InvalidStateError&) {
      exception_threw = true;
    }
    co_await h;
  }());
  EXPECT_TRUE(result_threw);
  EXPECT_TRUE(exception_threw);
}

TEST(TaskHandle, ExceptionReturnsTheExceptionPointer) {
  std::string what;
  bool null_for_success = false;
  bool result_rethrows = false;
  corio::run([&]() -> corio::Task<> {
    auto bad = corio::create_task(fails_after_a_turn());
    auto good = corio::create_task(value_after_sleeps(1, 1));
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
    EXPECT_TRUE(bad.done());
    EXPECT_FALSE(bad.cancelled());
    std::exception_ptr e = bad.exception();
    try {
      if (e) std::rethrow_exception(e);
    } catch (const std::runtime_error& x) {
      what = x.what();
    }
    null_for_success = good.exception() == nullptr;
    try {
      (void)bad.result();
    } catch (const std::runtime_error&) {
      result_rethrows = true;
    }
  }());
  EXPECT_EQ(what, "task failed");
  EXPECT_TRUE(null_for_success);
  EXPECT_TRUE(result_rethrows);
}

TEST(TaskHandle, AwaitRethrowsTheTasksException) {
  std::string what;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task(fails_after_a_turn());
    try {
      co_await h;
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
  }());
  EXPECT_EQ(what, "task failed");
}

TEST(TaskHandle, TypeErasedHandleSeesTheSameTask) {
  bool done = false, cancelled = true, same_name = false;
  int typed = 0;
  corio::run([&]() -> corio::Task<> {
    corio::TaskHandle<int> h = corio::create_task(value_after_sleeps(5, 1), "typed");
    corio::TaskHandle<> v = h;
    same_name = v.get_name() == "typed";
    co_await v;  // waits for the int task, discarding the value
    v.result();  // finished with a value: does not throw
    done = v.done();
    cancelled = v.cancelled();
    typed = h.result();
  }());
  EXPECT_TRUE(same_name);
  EXPECT_TRUE(done);
  EXPECT_FALSE(cancelled);
  EXPECT_EQ(typed, 5);
}

TEST(TaskHandle, EmptyHandle) {
  corio::TaskHandle<int> h;
  EXPECT_FALSE(h);
  EXPECT_THROW((void)h.done(), corio::InvalidStateError);
}

TEST(TaskHandle, ATaskCannotAwaitItself) {
  bool threw = false;
  corio::run([&]() -> corio::Task<> {
    try {
      co_await corio::current_task();
    } catch (const corio::RuntimeError&) {
      threw = true;
    }
  }());
  EXPECT_TRUE(threw);
}

TEST(TaskHandle, DoneCallbacksAreScheduledNeverInline) {
  Log log;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task(value_after_sleeps(3, 0));
    h.add_done_callback(
        [&](corio::TaskHandle<int> t) { log.push_back("cb1:" + std::to_string(t.result())); });
    h.add_done_callback([&](corio::TaskHandle<int>) { log.push_back("cb2"); });
    co_await h;
    log.push_back("awaited");
    h.add_done_callback([&](corio::TaskHandle<int>) { log.push_back("cb3"); });  // already done
    log.push_back("registered cb3");
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
  }());
  ASSERT_EQ(log.size(), 5u);
  auto pos = [&](const std::string& what) { return std::find(log.begin(), log.end(), what) - log.begin(); };
  // cb1 and cb2 were scheduled when the task finished, in registration order; cb3 was registered on an
  // already finished task and still runs on a later turn, not inside add_done_callback.
  EXPECT_LT(pos("cb1:3"), pos("cb2"));
  EXPECT_LT(pos("registered cb3"), pos("cb3"));
  EXPECT_LT(pos("awaited"), pos("registered cb3"));
  EXPECT_EQ(log.back(), "cb3");
}

// Awaiting a task and a done callback are told in the order they were registered, as in asyncio (where the
// await is a done callback itself): a callback added before a task started awaiting runs before that task
// resumes, one added after it runs after.
TEST(TaskHandle, DoneCallbacksAndAwaitersRunInRegistrationOrder) {
  Log log;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task(value_after_sleeps(2, 3));
    h.add_done_callback([&](corio::TaskHandle<int>) { log.push_back("cb before"); });
    auto await_h = [&]() -> corio::Task<> {
      co_await h;
      log.push_back("waiter resumed");
    };
    auto waiter = corio::create_task(await_h());
    co_await corio::sleep(0s);  // the waiter now awaits h
    h.add_done_callback([&](corio::TaskHandle<int>) { log.push_back("cb after"); });
    co_await waiter;
    co_await corio::sleep(0s);
  }());
  EXPECT_EQ(log, (Log{"cb before", "waiter resumed", "cb after"}));
}

// ---------------------------------------------------------------- cancellation

TEST(Cancel, SleepingTaskGetsCancelledErrorWithTheMessage) {
  Log log;
  std::string awaiter_msg;
  double t_before = -1, t_after = -1;
  bool cancelled = false;
  corio::run(
      [&]() -> corio::Task<> {
        auto h = corio::create_task(logging_sleeper(log));
        co_await corio::sleep(0s);
        t_before = corio::get_running_loop().time();
        EXPECT_TRUE(h.cancel("stop it"));
        try {
          co_await h;
        } catch (const corio::CancelledError& e) {
          awaiter_msg = e.message();
        }
        t_after = corio::get_running_loop().time();
        cancelled = h.cancelled();
      }(),
      kVirtual);
  EXPECT_EQ(log, (Log{"cancelled: stop it"}));
  EXPECT_EQ(awaiter_msg, "stop it");
  EXPECT_TRUE(cancelled);
  EXPECT_EQ(t_before, t_after);  // the hour-long sleep was cut short: no time passed
}

TEST(Cancel, ReachesAChildTaskBeingAwaited) {
  Log log;
  bool parent_cancelled = false, child_cancelled = false;
  corio::run([&]() -> corio::Task<> {
    auto child = corio::create_task(logging_sleeper(log), "child");
    auto parent = corio::create_task(await_handle(child), "parent");
    co_await corio::sleep(0s);
    EXPECT_EQ(parent.awaiting(), "task 'child'");
    parent.cancel("from above");
    try {
      co_await parent;
    } catch (const corio::CancelledError&) {
    }
    parent_cancelled = parent.cancelled();
    child_cancelled = child.cancelled();
  }());
  EXPECT_TRUE(parent_cancelled);
  EXPECT_TRUE(child_cancelled);
  EXPECT_EQ(log, (Log{"cancelled: from above"}));
}

TEST(Cancel, ReachesACoroutineAwaitedInline) {
  Log log;
  corio::run([&]() -> corio::Task<> {
    auto outer = corio::create_task([](Log& l) -> corio::Task<> {
      try {
        co_await logging_sleeper(l);
      } catch (const corio::CancelledError&) {
        l.push_back("outer saw it");
        throw;
      }
    }(log));
    co_await corio::sleep(0s);
    outer.cancel();
    try {
      co_await outer;
    } catch (const corio::CancelledError&) {
    }
    EXPECT_TRUE(outer.cancelled());
  }());
  EXPECT_EQ(log, (Log{"cancelled: ", "outer saw it"}));
}

TEST(Cancel, NotYetStartedTaskNeverRunsItsBody) {
  bool ran = false;
  bool cancelled = false, done = false, cancel_returned = false;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task(set_flag(ran));
    cancel_returned = h.cancel();
    co_await corio::sleep(0s);
    done = h.done();
    cancelled = h.cancelled();
  }());
  EXPECT_TRUE(cancel_returned);
  EXPECT_FALSE(ran);
  EXPECT_TRUE(done);
  EXPECT_TRUE(cancelled);
}

TEST(Cancel, CancelOnAFinishedTaskReturnsFalse) {
  bool second = true;
  int cancelling = -1;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task(value_after_sleeps(1, 0));
    co_await h;
    second = h.cancel();
    cancelling = h.cancelling();
    EXPECT_FALSE(h.cancelled());
    EXPECT_EQ(h.result(), 1);
  }());
  EXPECT_FALSE(second);
  EXPECT_EQ(cancelling, 0);
}

// asyncio 3.11: Task.cancel() sets _log_traceback = False before it checks done(): cancel() on a task that
// already failed returns False and the failure is no longer reported as "never retrieved".
TEST(Cancel, CancelOnAFailedTaskMarksItsExceptionRetrieved) {
  corio_test::LogCapture logs;
  corio::run(
      []() -> corio::Task<> {
        auto h = corio::create_task([]() -> corio::Task<> {
          throw std::runtime_error("boom");
          co_return;
        }());
        co_await corio_test::turns(2);
        CO_ASSERT(h.done());
        EXPECT_FALSE(h.cancel());
        EXPECT_EQ(h.cancelling(), 0);
      }(),
      kVirtual);
  EXPECT_FALSE(logs.contains("never retrieved")) << logs.text();
}

TEST(Cancel, CancelledIsTrueOnlyOnceCancelledErrorEscaped) {
  int result = 0;
  bool cancelled_while_pending = true, cancelled_after = true;
  int cancelling = 0;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task([]() -> corio::Task<int> {
      try {
        co_await corio::sleep(1h);
      } catch (const corio::CancelledError&) {
        co_return 17;  // swallows the cancellation
      }
      co_return 0;
    }());
    co_await corio::sleep(0s);
    h.cancel();
    cancelled_while_pending = h.cancelled();  // asked, not yet cancelled
    result = co_await h;
    cancelled_after = h.cancelled();
    cancelling = h.cancelling();
  }());
  EXPECT_FALSE(cancelled_while_pending);
  EXPECT_FALSE(cancelled_after);
  EXPECT_EQ(result, 17);
  EXPECT_EQ(cancelling, 1);  // swallowing does not reset the count
}

// A task that caught CancelledError and is still cleaning up (awaiting) is neither done nor cancelled; it
// is cancelled once CancelledError escapes it.
TEST(Cancel, ATaskCleaningUpAfterCancelledErrorIsNotCancelledUntilItEscapes) {
  corio::run(
      []() -> corio::Task<> {
        auto c = corio::create_task([]() -> corio::Task<> {
          bool got = false;
          try {
            co_await corio::sleep(1h);
          } catch (const corio::CancelledError&) {
            got = true;
          }
          if (got) {
            co_await corio::sleep(0s);  // cleaning up
            co_await corio::sleep(0s);
            throw corio::CancelledError("late");
          }
        }());
        co_await corio::sleep(0s);
        EXPECT_TRUE(c.cancel());
        co_await corio::sleep(0s);  // c caught it and is in its first cleanup await
        EXPECT_FALSE(c.done());
        EXPECT_FALSE(c.cancelled());
        bool escaped = false;
        try {
          co_await c;
        } catch (const corio::CancelledError& e) {
          escaped = true;
          EXPECT_EQ(e.message(), "late");
        }
        EXPECT_TRUE(escaped);
        EXPECT_TRUE(c.cancelled());
      }(),
      kVirtual);
}

TEST(Cancel, CancellingCountsAndUncancelDecrements) {
  int after_two = 0, after_uncancel = 0, uncancel_ret = 0;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task(sleep_forever());
    co_await corio::sleep(0s);
    h.cancel();
    h.cancel();
    after_two = h.cancelling();
    uncancel_ret = h.uncancel();
    after_uncancel = h.cancelling();
    try {
      co_await h;
    } catch (const corio::CancelledError&) {
    }
  }());
  EXPECT_EQ(after_two, 2);
  EXPECT_EQ(uncancel_ret, 1);
  EXPECT_EQ(after_uncancel, 1);
}

TEST(Cancel, UncancelToZeroBeforeTheNextSuspensionWithdrawsIt) {
  // asyncio >= 3.13: when uncancel() brings the count to zero, a pending cancellation is withdrawn.
  bool finished = false;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task([](bool& f) -> corio::Task<> {
      corio::TaskHandle<> me = corio::current_task();
      me.cancel();
      me.uncancel();
      co_await corio::sleep(0s);
      f = true;
    }(finished));
    co_await h;
    EXPECT_FALSE(h.cancelled());
  }());
  EXPECT_TRUE(finished);
}

static_assert(!std::is_base_of_v<std::exception, corio::CancelledError>,
              "catch (const std::exception&) must not swallow cancellation");

TEST(Cancel, CatchStdExceptionDoesNotCatchCancelledError) {
  bool swallowed = false, escaped = false;
  bool cancelled = false;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task([](bool& s, bool& e) -> corio::Task<> {
      try {
        try {
          co_await corio::sleep(1h);
        } catch (const std::exception&) {
          s = true;
        }
      } catch (const corio::CancelledError&) {
        e = true;
        throw;
      }
    }(swallowed, escaped));
    co_await corio::sleep(0s);
    h.cancel();
    try {
      co_await h;
    } catch (const corio::CancelledError&) {
    }
    cancelled = h.cancelled();
  }());
  EXPECT_FALSE(swallowed);
  EXPECT_TRUE(escaped);
  EXPECT_TRUE(cancelled);
}

TEST(Cancel, SelfCancelThrowsAtTheNextSuspensionOnly) {
  Log log;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task([](Log& l) -> corio::Task<> {
      corio::current_task().cancel("self");
      l.push_back("still running");
      l.push_back("sync await: " + std::to_string(co_await value_after_sleeps(8, 0)));  // no suspension
      try {
        co_await corio::sleep(0s);
        l.push_back("not reached");
      } catch (const corio::CancelledError& e) {
        l.push_back("cancelled at suspension: " + e.message());
        throw;
      }
    }(log));
    try {
      co_await h;
    } catch (const corio::CancelledError&) {
    }
    EXPECT_TRUE(h.cancelled());
  }());
  EXPECT_EQ(log, (Log{"still running", "sync await: 8", "cancelled at suspension: self"}));
}

TEST(Cancel, SelfCancelledTaskThatReturnsWithoutSuspendingEndsCancelled) {
  bool cancelled = false;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task([]() -> corio::Task<int> {
      corio::current_task().cancel();
      co_return 1;
    }());
    try {
      co_await h;
    } catch (const corio::CancelledError&) {
    }
    cancelled = h.cancelled();
  }());
  EXPECT_TRUE(cancelled);
}

TEST(Cancel, ResultOfACancelledTaskThrowsCancelledError) {
  std::string msg = "unset";
  bool exception_throws = false;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task(sleep_forever());
    co_await corio::sleep(0s);
    h.cancel("bye");
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
    EXPECT_TRUE(h.done());
    try {
      h.result();
    } catch (const corio::CancelledError& e) {
      msg = e.message();
    }
    try {
      (void)h.exception();
    } catch (const corio::CancelledError&) {
      exception_throws = true;
    }
  }());
  EXPECT_EQ(msg, "bye");
  EXPECT_TRUE(exception_throws);
}

// Tasks awaiting one task are resumed in the order they began to wait (the done-watchers' list keeps
// arrival order), also when the awaited task got its Extras (a name) between two awaiters, and when an
// awaiter in the middle leaves the list (a cancelled shield: cancelling a plain `co_await t` would cancel t).
TEST(TaskHandle, AwaitersOfOneTaskResumeInTheOrderTheyCame) {
  std::vector<int> order;
  corio::run(
      [](std::vector<int>& order) -> corio::Task<> {
        auto target = corio::create_task(corio::sleep(10s));
        auto awaiter = [](corio::TaskHandle<> t, int i, std::vector<int>& order) -> corio::Task<> {
          if (i % 2 == 0)
            co_await t;
          else
            co_await corio::shield(t);
          order.push_back(i);
        };
        std::vector<corio::TaskHandle<>> awaiters;
        for (int i = 0; i < 3; ++i) awaiters.push_back(corio::create_task(awaiter(target, i, order)));
        co_await corio::sleep(0s);
        target.set_name("target");  // moves the watcher list into the task's Extras
        for (int i = 3; i < 7; ++i) awaiters.push_back(corio::create_task(awaiter(target, i, order)));
        co_await corio::sleep(0s);
        awaiters[1].cancel();
        awaiters[5].cancel();
        co_await corio::sleep(0s);
        EXPECT_TRUE(awaiters[1].cancelled());
        EXPECT_TRUE(awaiters[5].cancelled());
        EXPECT_FALSE(target.done());
        co_await corio::sleep(20s);  // (virtual time) the target's sleep ends
        for (auto& a : awaiters) EXPECT_TRUE(a.done());
      }(order),
      kVirtual);
  EXPECT_EQ(order, (std::vector<int>{0, 2, 3, 4, 6}));
}

// Two tasks awaiting each other (a program bug, but not a crash): cancelling one passes the request to the
// other, which passes it back; the second pass only marks the task, instead of recursing until the stack
// overflowed (ASan's stack-overflow; Python raises RecursionError and survives). Both end cancelled.
TEST(Cancel, TwoTasksAwaitingEachOtherCanBeCancelled) {
  corio::run(
      []() -> corio::Task<> {
        corio::TaskHandle<void> a, b;
        a = corio::create_task([](corio::TaskHandle<void>& b) -> corio::Task<> {
          co_await corio::sleep(0s);  // b exists now
          co_await b;
        }(b));
        b = corio::create_task([](corio::TaskHandle<void>& a) -> corio::Task<> {
          co_await corio::sleep(0s);
          co_await a;
        }(a));
        co_await corio::sleep(1s);  // each awaits the other
        EXPECT_TRUE(a.cancel());
        bool a_cancelled = false, b_cancelled = false;
        try {
          co_await a;
        } catch (const corio::CancelledError&) {
          a_cancelled = true;
        }
        try {
          co_await b;
        } catch (const corio::CancelledError&) {
          b_cancelled = true;
        }
        EXPECT_TRUE(a_cancelled);
        EXPECT_TRUE(b_cancelled);
      }(),
      kVirtual);
}

// Two requests before the task runs: the first woke it (its sleep took the cancellation), and that message
// is the one it sees, as asyncio's (the future it waited on was cancelled with "first"; the second request
// only set _must_cancel, and __step keeps the CancelledError it already has).
namespace {
corio::Task<> sleeper_logging_message(Log& log) {
  try {
    co_await corio::sleep(1h);
  } catch (const corio::CancelledError& e) {
    log.push_back("cancelled: '" + e.message() + "'");
    throw;
  }
}
corio::Task<> cancel_twice_in_one_turn(Log& log) {
  auto t = corio::create_task(sleeper_logging_message(log));
  co_await corio::sleep(0s);
  CO_ASSERT(t.cancel("first"));
  CO_ASSERT(t.cancel("second"));
  EXPECT_EQ(t.cancelling(), 2);
  try {
    co_await t;
  } catch (const corio::CancelledError& e) {
    log.push_back("awaiter: '" + e.message() + "'");
  }
}
}  // namespace

TEST(Cancel, TwoCancelsBeforeTheTaskRunsDeliverTheFirstMessage) {
  Log log;
  corio::run(cancel_twice_in_one_turn(log), kVirtual);
  EXPECT_EQ(log, (Log{"cancelled: 'first'", "awaiter: 'first'"}));
}

// Each cancel() carries its own message, as asyncio's: a second request without one has none (the first
// one's message stuck to it).
TEST(Cancel, ASecondCancelWithoutAMessageHasNone) {
  Log log;
  corio::run(
      [](Log& log) -> corio::Task<> {
        auto t = corio::create_task([](Log& log) -> corio::Task<> {
          for (int i = 0; i < 2; ++i) {
            try {
              co_await corio::sleep(1h);
            } catch (const corio::CancelledError& e) {
              log.push_back("cancelled: '" + e.message() + "'");
              corio::current_task().uncancel();
            }
          }
        }(log));
        co_await corio::sleep(1s);
        t.cancel("first");
        co_await corio::sleep(1s);
        t.cancel();
        co_await t;
      }(log),
      kVirtual);
  EXPECT_EQ(log, (Log{"cancelled: 'first'", "cancelled: ''"}));
}

// A task pending on another loop cannot be awaited here: RuntimeError at once, as asyncio's "attached to a
// different loop". It used to wait for ever (here the other loop was not even running).
TEST(TaskHandle, AwaitingATaskOfAnotherLoopThrowsRuntimeError) {
  corio::EventLoop other;
  corio::TaskHandle<int> t = other.run_until_complete([]() -> corio::Task<corio::TaskHandle<int>> {
    co_return corio::create_task(corio_test::value_after(1, 10s));
  }());
  ASSERT_FALSE(t.done());
  corio::run(
      [](corio::TaskHandle<int> t) -> corio::Task<> {
        auto awaiter =
            corio::create_task([](corio::TaskHandle<int> t) -> corio::Task<int> { co_return co_await t; }(t));
        co_await corio::sleep(1s);
        CO_ASSERT(awaiter.done());
        EXPECT_THROW(awaiter.result(), corio::RuntimeError);
      }(t),
      kVirtual);
  EXPECT_FALSE(t.done());  // left alone
  other.close();
  EXPECT_TRUE(t.cancelled());
}

// A done callback may be move-only (holding a std::promise), as call_soon's may. It did not compile: the
// callable was wrapped in a std::function.
TEST(TaskHandle, ADoneCallbackMayBeMoveOnly) {
  corio::run(
      []() -> corio::Task<> {
        auto t = corio::create_task(corio_test::value_after(7, 1s));
        std::promise<int> p;
        std::future<int> f = p.get_future();
        t.add_done_callback(
            [p = std::move(p)](corio::TaskHandle<int> h) mutable { p.set_value(h.result()); });
        co_await t;
        co_await corio::sleep(0s);
        CO_ASSERT(f.wait_for(0s) == std::future_status::ready);
        EXPECT_EQ(f.get(), 7);
      }(),
      kVirtual);
}
