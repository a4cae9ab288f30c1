// Task<T>: laziness, awaiting, the awaited-at-most-once rule, results and exceptions.
#include <gtest/gtest.h>

#include <corio/core/errors.hpp>
#include <corio/core/run.hpp>
#include <corio/core/sleep.hpp>
#include <corio/core/task.hpp>
#include <corio/core/task_handle.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "common/test_util.hpp"

using namespace std::chrono_literals;
using corio_test::Log;

namespace {

corio::Task<int> record(Log& log, std::string what, int value) {
  log.push_back(std::move(what));
  co_return value;
}

// Holds `token` in its frame: the frame's destruction drops the reference.
corio::Task<int> holds(std::shared_ptr<int> token, int& runs) {
  ++runs;
  co_return *token;
}

corio::Task<int> throws_runtime_error(Log& log) {
  log.push_back("thrower");
  throw std::runtime_error("boom");
  co_return 0;
}

corio::Task<std::unique_ptr<int>> make_unique_int(int v) { co_return std::make_unique<int>(v); }

corio::Task<> suspends_then_records(Log& log) {
  log.push_back("before sleep");
  co_await corio::sleep(0s);
  log.push_back("after sleep");
}

}  // namespace

static_assert(!std::is_copy_constructible_v<corio::Task<int>>, "Task is move-only");
static_assert(!std::is_copy_assignable_v<corio::Task<int>>, "Task is move-only");
static_assert(std::is_nothrow_move_constructible_v<corio::Task<int>>);
static_assert(std::is_same_v<corio::Task<>, corio::Task<void>>);

TEST(Task, CallingACoroutineFunctionRunsNothing) {
  auto token = std::make_shared<int>(5);
  int runs = 0;
  corio::Task<int> t = holds(token, runs);
  EXPECT_TRUE(t.valid());
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(token.use_count(), 2);  // the frame holds its copy of the parameter
}

TEST(Task, DestroyedUnawaitedTaskNeverRunsAndFreesItsFrame) {
  auto token = std::make_shared<int>(5);
  int runs = 0;
  {
    corio::Task<int> t = holds(token, runs);
    EXPECT_EQ(token.use_count(), 2);
  }
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(token.use_count(), 1);  // the frame (and its copy of the parameter) is gone

  // The same inside a running loop.
  corio::run([&]() -> corio::Task<> {
    { corio::Task<int> t = holds(token, runs); }
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
  }());
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(token.use_count(), 1);
}

TEST(Task, CoAwaitRunsItInlineAndYieldsItsValue) {
  Log log;
  int v = corio::run([&]() -> corio::Task<int> {
    corio::Task<int> t = record(log, "child", 7);
    log.push_back("created");
    int r = co_await t;
    log.push_back("after await");
    co_return r;
  }());
  EXPECT_EQ(v, 7);
  EXPECT_EQ(log, (Log{"created", "child", "after await"}));
}

TEST(Task, CoAwaitOfASuspendingTaskResumesTheAwaiterAfterIt) {
  Log log;
  corio::run([&]() -> corio::Task<> {
    log.push_back("outer start");
    co_await suspends_then_records(log);
    log.push_back("outer end");
  }());
  EXPECT_EQ(log, (Log{"outer start", "before sleep", "after sleep", "outer end"}));
}

TEST(Task, CoAwaitRethrowsTheTasksException) {
  Log log;
  std::string what;
  corio::run([&]() -> corio::Task<> {
    try {
      co_await throws_runtime_error(log);
      log.push_back("not reached");
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
  }());
  EXPECT_EQ(what, "boom");
  EXPECT_EQ(log, (Log{"thrower"}));
}

TEST(Task, MoveOnlyResultIsMovedOut) {
  int v = corio::run([]() -> corio::Task<int> {
    std::unique_ptr<int> p = co_await make_unique_int(9);
    co_return *p;
  }());
  EXPECT_EQ(v, 9);
}

TEST(Task, AwaitingTwiceThrowsInvalidState) {
  Log log;
  bool threw = false;
  int first = 0;
  corio::run([&]() -> corio::Task<> {
    corio::Task<int> t = record(log, "ran", 3);
    first = co_await t;
    try {
      co_await t;
    } catch (const corio::InvalidStateError&) {
      threw = true;
    }
  }());
  EXPECT_EQ(first, 3);
  EXPECT_TRUE(threw);
  EXPECT_EQ(log, (Log{"ran"}));  // the second await did not run the body again
}

TEST(Task, AwaitingAMovedFromTaskThrowsInvalidState) {
  Log log;
  bool threw = false;
  int second = 0;
  corio::run([&]() -> corio::Task<> {
    corio::Task<int> t = record(log, "ran", 4);
    corio::Task<int> t2 = std::move(t);
    EXPECT_FALSE(t.valid());
    EXPECT_TRUE(t2.valid());
    try {
      co_await t;
    } catch (const corio::InvalidStateError&) {
      threw = true;
    }
    second = co_await std::move(t2);
  }());
  EXPECT_TRUE(threw);
  EXPECT_EQ(second, 4);
  EXPECT_EQ(log, (Log{"ran"}));
}

TEST(Task, CreateTaskRejectsAnAwaitedOrMovedFromTask) {
  bool awaited_threw = false, moved_threw = false;
  corio::run([&]() -> corio::Task<> {
    Log log;
    corio::Task<int> t = record(log, "x", 1);
    co_await t;
    try {
      (void)corio::create_task(std::move(t));
    } catch (const corio::InvalidStateError&) {
      awaited_threw = true;
    }
    corio::Task<int> moved;
    try {
      (void)corio::create_task(std::move(moved));
    } catch (const corio::InvalidStateError&) {
      moved_threw = true;
    }
  }());
  EXPECT_TRUE(awaited_threw);
  EXPECT_TRUE(moved_threw);
}

TEST(Task, MoveAssignmentDestroysTheOverwrittenFrame) {
  auto a = std::make_shared<int>(1);
  auto b = std::make_shared<int>(2);
  int runs = 0;
  corio::Task<int> t = holds(a, runs);
  t = holds(b, runs);
  EXPECT_EQ(a.use_count(), 1);
  EXPECT_EQ(b.use_count(), 2);
  EXPECT_EQ(runs, 0);
}
