// Introspection: TaskHandle::awaiting(), dump_tasks(), current_task(), all_tasks().
#include <gtest/gtest.h>

#include <corio/core/errors.hpp>
#include <corio/core/event_loop.hpp>
#include <corio/core/run.hpp>
#include <corio/core/sleep.hpp>
#include <corio/core/task.hpp>
#include <corio/core/task_handle.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "common/test_util.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;

namespace {

corio::Task<> innermost_sleeper() { co_await corio::sleep(30s); }
corio::Task<> middle_layer() { co_await innermost_sleeper(); }
corio::Task<> outer_layer() { co_await middle_layer(); }

corio::Task<> waits_on(corio::TaskHandle<> h) { co_await h; }

corio::Task<> quick() { co_return; }

// Positions of `needles` in `hay`, in order; npos where one is missing.
std::vector<std::size_t> positions(const std::string& hay, std::initializer_list<const char*> needles) {
  std::vector<std::size_t> out;
  for (const char* n : needles) out.push_back(hay.find(n));
  return out;
}

}  // namespace

TEST(Introspection, AwaitingDescribesSleepAndChildTask) {
  std::string sleeping, waiting, running, not_started, ready, done;
  corio::run(
      [&]() -> corio::Task<> {
        auto sleeper = corio::create_task(outer_layer(), "sleeper");
        not_started = sleeper.awaiting();
        co_await corio::sleep(0s);
        sleeping = sleeper.awaiting();
        auto waiter = corio::create_task(waits_on(sleeper), "waiter");
        co_await corio::sleep(0s);
        waiting = waiter.awaiting();
        running = corio::current_task().awaiting();
        auto q = corio::create_task(quick());
        corio::get_running_loop().call_soon([&] { ready = corio::current_task() ? "in a task" : "none"; });
        co_await q;
        done = q.awaiting();
        sleeper.cancel();
        try {
          co_await waiter;
        } catch (const corio::CancelledError&) {
        }
      }(),
      kVirtual);
  EXPECT_EQ(not_started, "not started");
  EXPECT_EQ(sleeping, "sleep until 30.000");
  EXPECT_EQ(waiting, "task 'sleeper'");
  EXPECT_EQ(running, "running");
  EXPECT_EQ(done, "done");
  EXPECT_EQ(ready, "none");  // current_task() is empty inside a plain callback
}

TEST(Introspection, AwaitingShowsReadyForAWokenTask) {
  std::string state;
  corio::run([&]() -> corio::Task<> {
    auto h = corio::create_task([]() -> corio::Task<> {
      co_await corio::sleep(0s);
      co_await corio::sleep(0s);
    }());
    co_await corio::sleep(0s);  // h ran its first step: it is queued for the next turn, not waiting
    state = h.awaiting();
    co_await h;
  }());
  EXPECT_EQ(state, "ready");
}

TEST(Introspection, DumpTasksListsEveryLiveTaskWithItsChain) {
  std::string dump;
  corio::run(
      [&]() -> corio::Task<> {
        auto sleeper = corio::create_task(outer_layer(), "sleeper");
        auto waiter = corio::create_task(waits_on(sleeper), "waiter");
        co_await corio::sleep(0s);
        dump = corio::dump_tasks();
        sleeper.cancel();
        try {
          co_await waiter;
        } catch (const corio::CancelledError&) {
        }
      }(),
      kVirtual);
  // Every live task: the main task, the sleeper and the waiter.
  EXPECT_NE(dump.find("Task 'Task-1'"), std::string::npos) << dump;
  EXPECT_NE(dump.find("Task 'sleeper'"), std::string::npos) << dump;
  EXPECT_NE(dump.find("Task 'waiter'"), std::string::npos) << dump;
  // The sleeper's block: what it awaits, then its chain of coroutines, innermost first.
  std::string sleeper_block = dump.substr(dump.find("Task 'sleeper'"));
  sleeper_block = sleeper_block.substr(0, sleeper_block.find("Task '", 1));
  EXPECT_NE(sleeper_block.find("sleep until 30.000"), std::string::npos) << sleeper_block;
  auto pos = positions(sleeper_block, {"innermost_sleeper", "middle_layer", "outer_layer"});
  for (std::size_t p : pos) EXPECT_NE(p, std::string::npos) << sleeper_block;
  EXPECT_TRUE(std::is_sorted(pos.begin(), pos.end())) << sleeper_block;
  // The waiter's block names the task it awaits and its coroutine.
  std::string waiter_block = dump.substr(dump.find("Task 'waiter'"));
  waiter_block = waiter_block.substr(0, waiter_block.find("Task '", 1));
  EXPECT_NE(waiter_block.find("task 'sleeper'"), std::string::npos) << waiter_block;
  EXPECT_NE(waiter_block.find("waits_on"), std::string::npos) << waiter_block;
}

TEST(Introspection, DumpTasksOmitsFinishedTasks) {
  std::string dump;
  corio::run([&]() -> corio::Task<> {
    co_await corio::create_task(quick(), "finished-one");
    dump = corio::dump_tasks();
  }());
  EXPECT_EQ(dump.find("finished-one"), std::string::npos) << dump;
  EXPECT_NE(dump.find("Task 'Task-1'"), std::string::npos) << dump;
}

TEST(Introspection, CurrentTaskAndAllTasks) {
  bool current_is_main = false;
  std::vector<std::string> names;
  std::string inner_current;
  corio::run(
      [&]() -> corio::Task<> {
        corio::TaskHandle<> me = corio::current_task();
        auto a = corio::create_task(
            [](std::string& out) -> corio::Task<> {
              out = corio::current_task().get_name();
              co_return;
            }(inner_current),
            "a");
        auto b = corio::create_task(corio::sleep(1s), "b");
        for (auto& h : corio::all_tasks()) names.push_back(h.get_name());
        current_is_main = me == corio::current_task() && me.get_name() == "Task-1";
        co_await a;
        co_await b;
      }(),
      kVirtual);
  EXPECT_TRUE(current_is_main);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"Task-1", "a", "b"}));
  EXPECT_EQ(inner_current, "a");
}
