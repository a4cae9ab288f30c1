// EventLoop: call_soon FIFO and turn boundaries, timers, cross-thread wake-up, run_forever/stop.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <pthread.h>

#include <corio/core/errors.hpp>
#include <corio/core/event_loop.hpp>
#include <corio/core/run.hpp>
#include <corio/core/sleep.hpp>
#include <corio/core/task.hpp>
#include <corio/core/task_handle.hpp>

#include <corio/core/detail/timer_heap.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <latch>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/test_util.hpp"
#include "log_capture.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;
using corio_test::Log;

namespace {

// Logs "t0", "t1", ... one entry per step, yielding one turn between steps: a turn counter.
corio::Task<> ticker(Log& log, int steps) {
  for (int i = 0; i < steps; ++i) {
    log.push_back("t" + std::to_string(i));
    co_await corio::sleep(0s);
  }
}

}  // namespace

TEST(EventLoop, GetRunningLoopOutsideALoopThrows) {
  EXPECT_THROW(corio::get_running_loop(), corio::RuntimeError);
  EXPECT_THROW((void)corio::current_task(), corio::RuntimeError);
}

TEST(EventLoop, GetRunningLoopInsideRunIsTheRunningLoop) {
  bool running = false;
  corio::run([&]() -> corio::Task<> {
    corio::EventLoop& loop = corio::get_running_loop();
    running = loop.is_running();
    co_return;
  }());
  EXPECT_TRUE(running);
}

TEST(EventLoop, CallSoonRunsFifo) {
  corio::EventLoop loop;
  Log log;
  for (int i = 0; i < 5; ++i) loop.call_soon([&, i] { log.push_back(std::to_string(i)); });
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  EXPECT_EQ(log, (Log{"0", "1", "2", "3", "4"}));
}

TEST(EventLoop, ATurnRunsOnlyWhatWasReadyWhenItBegan) {
  // The ticker logs once per turn. A callback scheduled from inside a callback must land on the next
  // turn, i.e. after the ticker's next step.
  Log log;
  corio::run([&]() -> corio::Task<> {
    corio::EventLoop& loop = corio::get_running_loop();
    auto tick = corio::create_task(ticker(log, 4));
    loop.call_soon([&] {
      log.push_back("a");
      loop.call_soon([&] {
        log.push_back("c");
        loop.call_soon([&] { log.push_back("e"); });
      });
    });
    co_await tick;
  }());
  EXPECT_EQ(log, (Log{"t0", "a", "t1", "c", "t2", "e", "t3"}));
}

TEST(EventLoop, StopFinishesTheCurrentTurnOnly) {
  corio::EventLoop loop;
  Log log;
  loop.call_soon([&] {
    log.push_back("first");
    loop.stop();
    loop.call_soon([&] { log.push_back("next turn"); });
  });
  loop.call_soon([&] { log.push_back("same turn"); });
  loop.run_forever();
  EXPECT_EQ(log, (Log{"first", "same turn"}));
  EXPECT_FALSE(loop.is_running());
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();  // stop() is reset: the loop runs again, and the leftover callback with it
  EXPECT_EQ(log, (Log{"first", "same turn", "next turn"}));
}

TEST(EventLoop, CancelledCallSoonHandleNeverRuns) {
  corio::EventLoop loop;
  Log log;
  loop.call_soon([&] { log.push_back("a"); });
  corio::Handle h = loop.call_soon([&] { log.push_back("b"); });
  loop.call_soon([&] { log.push_back("c"); });
  h.cancel();
  EXPECT_TRUE(h.cancelled());
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  EXPECT_EQ(log, (Log{"a", "c"}));
}

TEST(EventLoop, TimersFireInTimeOrderAndCanBeCancelled) {
  corio::EventLoop loop(kVirtual);
  std::vector<std::pair<std::string, double>> fired;
  auto rec = [&](std::string name) { return [&, name] { fired.emplace_back(name, loop.time()); }; };
  const double t0 = loop.time();
  loop.call_later(3.0, rec("later 3"));
  corio::TimerHandle h2 = loop.call_later(2.0, rec("later 2 (cancelled)"));
  loop.call_at(t0 + 1.0, rec("at 1"));
  loop.call_later(1500ms, rec("later 1.5ms"));
  loop.call_later(0.25, rec("later 0.25"));
  loop.call_at(t0 + 1.0, rec("at 1 again"));  // same due time: after the first, in arrival order
  EXPECT_DOUBLE_EQ(h2.when(), t0 + 2.0);
  h2.cancel();
  EXPECT_TRUE(h2.cancelled());
  loop.call_later(4.0, [&] { loop.stop(); });
  loop.run_forever();
  ASSERT_EQ(fired.size(), 5u);
  EXPECT_EQ(fired[0].first, "later 0.25");
  EXPECT_EQ(fired[1].first, "at 1");
  EXPECT_EQ(fired[2].first, "at 1 again");
  EXPECT_EQ(fired[3].first, "later 1.5ms");
  EXPECT_EQ(fired[4].first, "later 3");
  EXPECT_DOUBLE_EQ(fired[0].second, t0 + 0.25);
  EXPECT_DOUBLE_EQ(fired[1].second, t0 + 1.0);
  EXPECT_DOUBLE_EQ(fired[2].second, t0 + 1.0);
  EXPECT_DOUBLE_EQ(fired[3].second, t0 + 1.5);
  EXPECT_DOUBLE_EQ(fired[4].second, t0 + 3.0);
  EXPECT_DOUBLE_EQ(loop.time(), t0 + 4.0);
}

TEST(EventLoop, TimerRunsNoEarlierThanItsDueTime) {
  // call_at(when): f runs when time() reaches `when`, also for times that are not exact in binary.
  corio::EventLoop loop(kVirtual);
  std::vector<std::pair<double, double>> seen;  // (when, time() inside the callback)
  for (double when : {0.1, 0.3, 1.001, 1.003, 2.9}) {
    loop.call_at(when, [&, when] { seen.emplace_back(when, loop.time()); });
  }
  for (double delay : {0.2, 1.005}) {
    loop.call_later(delay, [&, delay] { seen.emplace_back(delay, loop.time()); });
  }
  loop.call_later(3.0, [&] { loop.stop(); });
  loop.run_forever();
  ASSERT_EQ(seen.size(), 7u);
  for (auto [when, now] : seen) {
    EXPECT_GE(now, when);
    EXPECT_DOUBLE_EQ(now, when);
  }
}

TEST(EventLoop, TimerCancelledByAnotherCallbackOfTheSameTurnDoesNotRun) {
  corio::EventLoop loop(kVirtual);
  Log log;
  corio::TimerHandle second;
  loop.call_later(1.0, [&] {
    log.push_back("first");
    second.cancel();
  });
  second = loop.call_later(1.0, [&] { log.push_back("second"); });
  loop.call_later(2.0, [&] { loop.stop(); });
  loop.run_forever();
  EXPECT_EQ(log, (Log{"first"}));
}

TEST(EventLoop, CallSoonRunsBeforeTimersThatExpireLater) {
  Log log;
  corio::run(
      [&]() -> corio::Task<> {
        corio::EventLoop& loop = corio::get_running_loop();
        loop.call_later(0.0, [&] { log.push_back("timer 0"); });
        loop.call_soon([&] { log.push_back("soon"); });
        co_await corio::sleep(1s);
      }(),
      kVirtual);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1], "timer 0");  // a timer's callback joins the ready queue behind what is already there
}

// From the loop's own thread, call_soon_threadsafe keeps its place among call_soon's callbacks, as
// asyncio's (call_soon plus a wake-up); it went through the cross-thread queue, behind a later call_soon.
TEST(EventLoop, CallSoonThreadsafeFromTheLoopThreadKeepsFifoWithCallSoon) {
  corio::EventLoop loop;
  Log log;
  loop.call_soon([&] {
    loop.call_soon_threadsafe([&] { log.push_back("A (threadsafe)"); });
    loop.call_soon([&] { log.push_back("B (call_soon)"); });
    loop.call_soon([&] { loop.call_soon([&] { loop.stop(); }); });
  });
  loop.run_forever();
  EXPECT_EQ(log, (Log{"A (threadsafe)", "B (call_soon)"}));
}

TEST(EventLoop, CallSoonThreadsafeWakesABlockedLoop) {
  // After the first turn nothing is ready and no timer exists, so the loop blocks in the poller until the
  // other thread's callback arrives. Repeated so both orders (post before / after the loop blocks) occur.
  for (bool virtual_time : {false, true}) {
    for (int i = 0; i < 50; ++i) {
      corio::EventLoop loop({.virtual_time = virtual_time});
      std::thread::id ran_on;
      std::thread poster;
      loop.call_soon([&] {
        poster = std::thread([&] {
          loop.call_soon_threadsafe([&] {
            ran_on = std::this_thread::get_id();
            loop.stop();
          });
        });
      });
      loop.run_forever();
      poster.join();
      EXPECT_EQ(ran_on, std::this_thread::get_id());
    }
  }
}

TEST(EventLoop, CallSoonThreadsafeCancelsATaskInRun) {
  // Another thread reaches a task through the loop: its callback cancels a sleeping task by its handle.
  std::thread poster;
  int result = corio::run([&]() -> corio::Task<int> {
    corio::EventLoop& loop = corio::get_running_loop();
    auto blocker = corio::create_task([]() -> corio::Task<int> {
      try {
        co_await corio::sleep(std::chrono::hours(24 * 365));
      } catch (const corio::CancelledError&) {
        co_return 99;
      }
      co_return 0;
    }());
    co_await corio::sleep(0s);
    // Handles are loop-thread objects: the other thread only carries a pointer to one.
    corio::TaskHandle<int>* target = &blocker;
    poster = std::thread([&loop, target] { loop.call_soon_threadsafe([target] { target->cancel(); }); });
    co_return co_await blocker;
  }());
  poster.join();
  EXPECT_EQ(result, 99);
}

TEST(EventLoop, RunUntilCompleteAndRunForeverErrors) {
  corio::EventLoop loop(kVirtual);
  int v = loop.run_until_complete([]() -> corio::Task<int> {
    co_await corio::sleep(2s);
    co_return 6;
  }());
  EXPECT_EQ(v, 6);
  EXPECT_DOUBLE_EQ(loop.time(), 2.0);
  bool nested_threw = false;
  loop.call_soon([&] {
    try {
      loop.run_forever();
    } catch (const corio::RuntimeError&) {
      nested_threw = true;
    }
    loop.stop();
  });
  loop.run_forever();
  EXPECT_TRUE(nested_threw);
  loop.close();
  EXPECT_TRUE(loop.is_closed());
  EXPECT_THROW(loop.run_forever(), corio::RuntimeError);
}

TEST(EventLoop, DebugFlag) {
  corio::EventLoop loop;
  loop.set_debug(true);
  EXPECT_TRUE(loop.get_debug());
  loop.set_debug(false);
  EXPECT_FALSE(loop.get_debug());
  corio::EventLoop dbg({.debug = true});
  EXPECT_TRUE(dbg.get_debug());
}

// The timer structure against a reference: random adds (runs of growing deadlines, which take the FIFO
// path, mixed with earlier ones, which take the heap, and many equal deadlines), cancels anywhere and pops.
// Every pop must give the earliest (due time, arrival) timer still scheduled.
TEST(TimerHeap, PopsInDueThenArrivalOrderAcrossRunAndHeapWithCancels) {
  struct Node final : corio::detail::TimerNode {
    int id = 0;
    void fire() override {}
  };
  std::mt19937 rng(12345);
  for (int round = 0; round < 20; ++round) {
    std::vector<Node> nodes(4000);
    corio::detail::TimerHeap heap;
    std::vector<std::pair<std::int64_t, int>> expect;  // (when, arrival) of every scheduled node
    std::vector<int> arrival(nodes.size(), -1);
    int next_arrival = 0;
    std::int64_t base = 0;
    std::size_t next = 0;
    auto pop_one = [&] {
      ASSERT_FALSE(heap.empty());
      auto it = std::min_element(expect.begin(), expect.end());
      auto* n = static_cast<Node*>(heap.pop());
      EXPECT_EQ(n->when_ns_, it->first);
      EXPECT_EQ(arrival[static_cast<std::size_t>(n->id)], it->second);
      EXPECT_FALSE(n->scheduled());
      expect.erase(it);
    };
    while (next < nodes.size() || !expect.empty()) {
      const unsigned r = rng() % 100;
      if (r < 55 && next < nodes.size()) {
        Node& n = nodes[next];
        n.id = static_cast<int>(next++);
        if (rng() % 4 != 0) base += static_cast<std::int64_t>(rng() % 3);  // mostly growing, often equal
        n.when_ns_ = rng() % 5 == 0 ? base - static_cast<std::int64_t>(rng() % 50) : base;
        arrival[static_cast<std::size_t>(n.id)] = next_arrival++;
        heap.push(n);
        expect.emplace_back(n.when_ns_, arrival[static_cast<std::size_t>(n.id)]);
      } else if (r < 75 && !expect.empty()) {  // cancel a random scheduled node
        auto& e = expect[rng() % expect.size()];
        auto id = std::find(arrival.begin(), arrival.end(), e.second) - arrival.begin();
        heap.remove(nodes[static_cast<std::size_t>(id)]);
        EXPECT_FALSE(nodes[static_cast<std::size_t>(id)].scheduled());
        e = expect.back();
        expect.pop_back();
      } else if (!expect.empty()) {
        pop_one();
      }
      ASSERT_EQ(heap.size(), expect.size());
      if (!expect.empty()) {
        auto it = std::min_element(expect.begin(), expect.end());
        ASSERT_EQ(heap.top()->when_ns_, it->first);
      }
    }
    EXPECT_TRUE(heap.empty());
  }
}

// Timeouts cancelled behind a timer due much later (a server's per-request wait_for behind an hourly job's
// sleep) leave emptied slots behind a live front; the structure stays proportional to the live timers
// instead of growing with every timeout ever cancelled until that front fires.
TEST(TimerHeap, CancelledTimersBehindALiveFrontDoNotAccumulate) {
  struct Node final : corio::detail::TimerNode {
    void fire() override {}
  };
  corio::detail::TimerHeap heap;
  Node front;
  front.when_ns_ = 1'000;
  heap.push(front);
  std::vector<Node> live(10);  // a few timers that stay, spread among the cancelled ones
  std::size_t most = 0;
  for (int i = 0; i < 200'000; ++i) {
    Node n;
    n.when_ns_ = 1'000 + i;
    heap.push(n);
    if (i % 20'000 == 0) {
      Node& l = live[static_cast<std::size_t>(i / 20'000)];
      l.when_ns_ = 1'000 + i;
      heap.push(l);
    }
    heap.remove(n);
    most = std::max(most, heap.slots());
  }
  EXPECT_EQ(heap.size(), 11u);
  EXPECT_LT(most, 2'100u) << "slots grew with the cancelled timers";
  EXPECT_EQ(heap.pop(), &front);
  for (auto& l : live) EXPECT_EQ(heap.pop(), &l);
  EXPECT_TRUE(heap.empty());
}

// Delays and times too large for the clock (1e10 s, a thousand years in hours) saturate to "never": other
// timers keep working and the far one never fires. (They overflowed: the far callback ran at once, or the
// poll timeout went negative-huge and the loop blocked for ever; UBSan reported the signed overflow.)
TEST(EventLoop, HugeDelaysMeanNeverAndDoNotDisturbOtherTimers) {
  corio::run(
      []() -> corio::Task<> {
        auto& loop = corio::get_running_loop();
        std::vector<std::string> fired;
        loop.call_later(1e10, [&] { fired.push_back("1e10 s"); });
        loop.call_later(std::chrono::hours(24 * 365 * 1000), [&] { fired.push_back("1000 years"); });
        loop.call_at(1e300, [&] { fired.push_back("call_at 1e300"); });
        loop.call_later(0.2, [&] { fired.push_back("0.2 s"); });
        co_await corio::sleep(1s);
        EXPECT_EQ(fired, (std::vector<std::string>{"0.2 s"}));
      }(),
      kVirtual);
}

// A closed loop takes no new work: call_soon, call_later and run_until_complete throw RuntimeError, as
// asyncio's do (they were accepted and the callbacks leaked; run_until_complete left its task behind).
// A callback that throws is logged and the loop goes on with the next one, as asyncio's "Exception in
// callback"; so does a callback out of which CancelledError escapes.
TEST(EventLoop, ACallbackThatThrowsIsLoggedAndTheLoopGoesOn) {
  corio_test::LogCapture captured;
  corio::EventLoop loop;
  Log log;
  loop.call_soon([] { throw std::runtime_error("boom"); });
  loop.call_soon([] { throw corio::CancelledError("stop it"); });
  loop.call_soon([] { throw 42; });
  loop.call_soon([&] { log.push_back("next"); });
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  EXPECT_EQ(log, (Log{"next"}));
  EXPECT_EQ(captured.count("Exception in callback: boom"), 1) << captured.text();
  EXPECT_EQ(captured.count("CancelledError escaped a callback"), 1) << captured.text();
  EXPECT_EQ(captured.count("Exception in callback: unknown exception"), 1) << captured.text();
}

// A log handler that throws stops nothing: the message goes to stderr and the loop runs on (the throw
// escaped the callback's guard, out of run_forever, and leaked the callback).
TEST(EventLoop, ALogHandlerThatThrowsDoesNotStopTheLoop) {
  auto old = corio::set_log_handler([](std::string_view) { throw std::runtime_error("sink failed"); });
  struct Restore {
    std::function<void(std::string_view)>& old;
    ~Restore() { corio::set_log_handler(std::move(old)); }
  } restore{old};
  corio::EventLoop loop;
  Log log;
  loop.call_soon([] { throw std::runtime_error("boom"); });
  loop.call_soon([&] { log.push_back("next"); });
  loop.call_soon([&] { loop.stop(); });
  testing::internal::CaptureStderr();
  EXPECT_NO_THROW(loop.run_forever());
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(log, (Log{"next"}));
  EXPECT_NE(err.find("the log handler threw (sink failed) on: Exception in callback: boom"),
            std::string::npos)
      << err;
}

TEST(EventLoop, AClosedLoopRefusesNewWork) {
  corio::EventLoop loop;
  loop.close();
  EXPECT_THROW(loop.call_soon([] {}), corio::RuntimeError);
  EXPECT_THROW(loop.call_later(1.0, [] {}), corio::RuntimeError);
  EXPECT_THROW(loop.run_until_complete([]() -> corio::Task<> { co_return; }()), corio::RuntimeError);
}

// A handle to a finished task, kept after its loop is gone (returned out of run()): add_done_callback
// throws RuntimeError("Event loop is closed") instead of writing into the destroyed loop (ASan saw that).
TEST(EventLoop, DoneCallbackOnAHandleThatOutlivedItsLoopThrows) {
  corio::TaskHandle<int> h = corio::run([]() -> corio::Task<corio::TaskHandle<int>> {
    auto child = corio::create_task([]() -> corio::Task<int> { co_return 7; }());
    co_await child;
    co_return child;
  }());
  EXPECT_EQ(h.result(), 7);
  EXPECT_THROW(h.add_done_callback([](corio::TaskHandle<int>&) {}), corio::RuntimeError);
}

// The same once a new loop has the gone loop's address (two run()s in a row at one stack depth make their
// loops at the same place): the callback went to the new loop and ran there. And on a loop closed but not
// yet destroyed.
namespace {
corio::Task<int> seven() { co_return 7; }
corio::Task<corio::TaskHandle<int>> finished_child() {
  auto child = corio::create_task(seven());
  co_await child;
  co_return child;
}
corio::Task<> add_callback_to(corio::TaskHandle<int> h, bool& ran, bool& threw) {
  try {
    h.add_done_callback([&ran](corio::TaskHandle<int>&) { ran = true; });
  } catch (const corio::RuntimeError&) {
    threw = true;
  }
  co_await corio::sleep(0s);
  co_await corio::sleep(0s);
}
}  // namespace

TEST(EventLoop, DoneCallbackOnAHandleOfAGoneLoopThrowsEvenIfANewLoopHasItsAddress) {
  alignas(corio::EventLoop) unsigned char place[sizeof(corio::EventLoop)];
  auto* first = new (place) corio::EventLoop();
  corio::TaskHandle<int> h = first->run_until_complete(finished_child());
  first->~EventLoop();
  auto* second = new (place) corio::EventLoop();  // the same address
  bool ran = false, threw = false;
  second->run_until_complete(add_callback_to(h, ran, threw));
  second->~EventLoop();
  EXPECT_TRUE(threw);
  EXPECT_FALSE(ran);
}

TEST(EventLoop, DoneCallbackOnAHandleOfAClosedLoopThrows) {
  corio::EventLoop loop;
  corio::TaskHandle<int> h = loop.run_until_complete(finished_child());
  loop.close();
  EXPECT_THROW(h.add_done_callback([](corio::TaskHandle<int>&) {}), corio::RuntimeError);
  EXPECT_EQ(h.result(), 7);
}

// This binary interposes pthread_mutex_unlock (the executable's definition wins over libc's), so that a test
// can stop a thread right after it released a mutex: the first unlock on a thread that armed
// tl_stop_after_unlock waits there for tl_resume.
namespace {
thread_local std::latch* tl_stop_after_unlock = nullptr;
}  // namespace

extern "C" int pthread_mutex_unlock(pthread_mutex_t* m) {
  using Fn = int (*)(pthread_mutex_t*);
  static Fn real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "pthread_mutex_unlock"));
  const int r = real(m);
  if (std::latch* resume = std::exchange(tl_stop_after_unlock, nullptr)) resume->wait();
  return r;
}

// call_soon_threadsafe reads nothing of the loop after it has released the loop's lock: once it has, the
// loop may run the callback, finish, close and be destroyed before the posting thread goes on (it read
// whether the loop slept, after the unlock: ASan saw a use after free).
TEST(EventLoop, CallSoonThreadsafeIsDoneWithTheLoopWhenItsCallbackCanRun) {
  auto loop = std::make_unique<corio::EventLoop>();
  std::latch loop_gone(1);
  std::atomic<bool> ran{false};
  std::atomic<corio::EventLoop*> running{nullptr};
  std::thread poster([&] {
    while (!running.load()) std::this_thread::yield();
    tl_stop_after_unlock = &loop_gone;  // stops after the loop's remote lock is released
    running.load()->call_soon_threadsafe([&ran] { ran = true; });
  });
  loop->run_until_complete(
      [](std::atomic<corio::EventLoop*>& running, std::atomic<bool>& ran) -> corio::Task<> {
        running = &corio::get_running_loop();
        while (!ran) co_await corio::sleep(0s);  // never sleeps in the poller: the post needs no wake-up
      }(running, ran));
  loop.reset();
  loop_gone.count_down();
  poster.join();
  EXPECT_TRUE(ran);
}

// run_until_complete on a loop that cannot run now (already running) throws before it makes the task, as
// asyncio checks first: the coroutine never runs (it ran later, as a stray task).
TEST(EventLoop, RunUntilCompleteWhileRunningThrowsAndRunsNothing) {
  bool ran = false;
  bool threw = false;
  corio::run(
      [](bool& ran, bool& threw) -> corio::Task<> {
        try {
          corio::get_running_loop().run_until_complete([](bool& ran) -> corio::Task<> {
            ran = true;
            co_return;
          }(ran));
        } catch (const corio::RuntimeError&) {
          threw = true;
        }
        co_await corio::sleep(1s);
      }(ran, threw),
      kVirtual);
  EXPECT_TRUE(threw);
  EXPECT_FALSE(ran);
}

// run_until_complete stops the loop on the turn after the task ended, as asyncio's: what the task's last
// step scheduled runs before it returns (close() dropped it).
TEST(EventLoop, RunUntilCompleteRunsWhatTheLastStepScheduled) {
  std::vector<std::string> log;
  corio::EventLoop loop(kVirtual);
  loop.run_until_complete([](std::vector<std::string>& log) -> corio::Task<> {
    corio::get_running_loop().call_soon([&log] { log.push_back("call_soon"); });
    co_return;
  }(log));
  EXPECT_EQ(log, (std::vector<std::string>{"call_soon"}));
  // The next run is not stopped early by anything left of the first.
  int turns = 0;
  loop.run_until_complete([](int& turns) -> corio::Task<> {
    for (; turns < 3; ++turns) co_await corio::sleep(0s);
  }(turns));
  EXPECT_EQ(turns, 3);
}

// A callback that keeps its own handle alive (an object holding the timer it scheduled, captured by the
// callback) is a reference cycle unless the loop lets go of the callback: at once when it is cancelled (as
// asyncio's Handle.cancel() drops the callback), after it ran, and, when it cancels itself while running,
// once it has returned.
TEST(EventLoop, CallbacksAreReleasedOnceCancelledOrRun) {
  struct Owner {
    corio::Handle handle;
    int runs = 0;
  };
  corio::run([]() -> corio::Task<> {
    auto& loop = corio::get_running_loop();
    std::weak_ptr<Owner> timer_cancelled, soon_cancelled, ran;
    {
      auto o = std::make_shared<Owner>();
      o->handle = loop.call_later(3600.0, [o] {});
      timer_cancelled = o;
      o->handle.cancel();
    }
    EXPECT_TRUE(timer_cancelled.expired());  // at once
    {
      auto o = std::make_shared<Owner>();
      o->handle = loop.call_soon([o] {});
      soon_cancelled = o;
      o->handle.cancel();
    }
    EXPECT_TRUE(soon_cancelled.expired());  // at once too
    std::weak_ptr<Owner> self_cancelled;
    {
      auto o = std::make_shared<Owner>();
      o->handle = loop.call_soon([o] {
        o->handle.cancel();  // its callable (and o) lives on until it returns
        ++o->runs;
      });
      self_cancelled = o;
    }
    {
      auto o = std::make_shared<Owner>();
      o->handle = loop.call_later(0.0, [o] {});
      ran = o;
    }
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
    EXPECT_TRUE(ran.expired());
    EXPECT_TRUE(self_cancelled.expired());
  }());
}

// close() destroys the frames of tasks still pending; a destructor there may schedule a callback or create
// a task (a guard telling somebody it is gone): that is swept with the rest, never run, and never throws
// out of the destructor (it did: "Event loop is closed", so std::terminate).
TEST(EventLoop, DestructorsRunByCloseMayScheduleWork) {
  struct Guard {
    bool* scheduled_ran;
    ~Guard() {
      auto& loop = corio::get_running_loop();
      loop.call_soon([r = scheduled_ran] { *r = true; });
      loop.call_later(1.0, [r = scheduled_ran] { *r = true; });
    }
  };
  bool scheduled_ran = false;
  corio::EventLoop loop;
  loop.run_until_complete([](bool* r) -> corio::Task<> {
    corio::create_task([](bool* r) -> corio::Task<> {
      Guard g{r};
      co_await corio::sleep(1h);
    }(r));
    co_await corio::sleep(0s);
  }(&scheduled_ran));
  EXPECT_NO_THROW(loop.close());
  EXPECT_TRUE(loop.is_closed());
  EXPECT_FALSE(scheduled_ran);
  EXPECT_THROW(loop.call_soon([] {}), corio::RuntimeError);
}

// Under virtual time a timer due "never" (a delay beyond the clock's range) is no reason to jump the clock:
// with nothing else to wait for, the loop waits for I/O or another thread (it jumped to the never-time and
// fired the timer; after that every new delay saturated, so timers fired in arrival order). Repeated so
// that the other thread's post lands both before and after the loop blocks.
TEST(EventLoop, VirtualTimeNeverJumpsToANeverTimer) {
  for (int i = 0; i < 50; ++i) {
    corio::EventLoop loop({.virtual_time = true});
    bool fired = false;
    std::thread poster;
    loop.call_later(1e10, [&] { fired = true; });
    loop.call_soon([&] { poster = std::thread([&] { loop.call_soon_threadsafe([&] { loop.stop(); }); }); });
    loop.run_forever();
    poster.join();
    EXPECT_FALSE(fired);
    EXPECT_LT(loop.time(), 1.0);
  }
}

// close() drops the done callbacks of a task still pending; a callback's destructor may cancel or rename
// that task (a guard: "nobody listens any more, stop it"), which moves its watchers into new Extras while
// they are being dropped (the next one was read from the slot that then held the Extras: a wild call).
TEST(EventLoop, ADroppedDoneCallbackMayCancelOrRenameItsTask) {
  for (bool rename : {false, true}) {
    struct Guard {
      Guard(corio::TaskHandle<> task, bool r) : t(std::move(task)), rename(r) {}
      Guard(const Guard&) = delete;  // (a temporary's destructor would cancel the task early)
      Guard& operator=(const Guard&) = delete;
      corio::TaskHandle<> t;
      bool rename;
      ~Guard() {
        if (rename)
          t.set_name("gone");
        else
          t.cancel();
      }
    };
    corio::TaskHandle<> t;
    {
      corio::EventLoop loop;
      auto main_fn = [&]() -> corio::Task<> {
        t = corio::create_task([]() -> corio::Task<> { co_await corio::sleep(1h); }());
        t.add_done_callback([g = std::make_shared<Guard>(t, rename)](corio::TaskHandle<>) {});
        t.add_done_callback([g = std::make_shared<Guard>(t, rename)](corio::TaskHandle<>) {});
        EXPECT_EQ(t.cancelling(), 0);
        co_return;
      };
      loop.run_until_complete(main_fn());
      loop.close();
    }
    EXPECT_TRUE(t.cancelled());
  }
}

TEST(EventLoop, CallSoonThreadsafeBeforeRunKeepsFifoWithCallSoon) {
  // asyncio: loop.call_soon_threadsafe(A); loop.call_soon(B) before run_forever runs A then B.
  corio::EventLoop loop;
  Log log;
  loop.call_soon_threadsafe([&] { log.push_back("A"); });
  loop.call_soon([&] { log.push_back("B"); });
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  EXPECT_EQ(log, (Log{"A", "B"}));
}

TEST(EventLoop, CallSoonThreadsafeFromAJoinedThreadRunsBeforeALaterCallSoon) {
  // asyncio: a thread's call_soon_threadsafe(A) that happened before the loop thread's call_soon(B) runs
  // first (it goes straight into _ready).
  corio::EventLoop loop;
  Log log;
  loop.call_soon([&] {
    std::thread t([&] { loop.call_soon_threadsafe([&] { log.push_back("A"); }); });
    t.join();
    loop.call_soon([&] { log.push_back("B"); });
    loop.call_soon([&] { loop.call_soon([&] { loop.stop(); }); });
  });
  loop.run_forever();
  EXPECT_EQ(log, (Log{"A", "B"}));
}
