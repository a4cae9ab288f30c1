// Thread offload: to_thread (values, exceptions, cancellation, responsiveness, pool size) and
// run_coroutine_threadsafe. Worker threads are ordered with std::promise/std::future and std::latch, never
// with sleeps; the loop side polls such conditions one loop turn at a time (sleep(0s)).
#include "corio/sync/thread.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <csignal>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "corio/core/detail/frame_allocator.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/log.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/wait_for.hpp"
#include "corio/sync/event.hpp"

#include "common/test_util.hpp"

using namespace std::chrono_literals;
using corio_test::kVirtual;
using corio_test::turn_until;

namespace {

struct MyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Restores the default pool size when a test that changed it ends.
struct PoolSizeReset {
  ~PoolSizeReset() { corio::set_to_thread_workers(0); }
};

int inhibitors() { return corio::get_running_loop().core().inhibit_auto_advance_; }

template <class Fut>
bool is_ready(const Fut& f) {
  return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

TEST(ToThread, ReturnsTheValue) {
  corio::run(
      []() -> corio::Task<> {
        const auto loop_thread = std::this_thread::get_id();
        std::thread::id ran_on;
        int v = co_await corio::to_thread([&] {
          ran_on = std::this_thread::get_id();
          return 42;
        });
        EXPECT_EQ(v, 42);
        EXPECT_NE(ran_on, loop_thread);
        EXPECT_EQ(std::this_thread::get_id(), loop_thread);  // resumed on the loop's thread
        // Arguments are passed by value.
        std::string s = co_await corio::to_thread([](std::string a, int n) { return a + std::to_string(n); },
                                                  std::string("x"), 7);
        EXPECT_EQ(s, "x7");
        // void.
        bool called = false;
        co_await corio::to_thread([&called] { called = true; });
        EXPECT_TRUE(called);
        // Move-only result.
        std::unique_ptr<int> p = co_await corio::to_thread([] { return std::make_unique<int>(5); });
        EXPECT_TRUE(p);
        if (!p) co_return;
        EXPECT_EQ(*p, 5);
        EXPECT_EQ(inhibitors(), 0);
      }(),
      kVirtual);
}

// The callable of a finished call is destroyed without the pool's lock: here its destructor waits until the
// loop has run another to_thread call (whose submit takes that lock). It deadlocked (until the destructor's
// own 10 s limit) when the worker destroyed the job holding the lock.
TEST(ToThread, ACallablesDestructorDoesNotHoldUpOtherCalls) {
  std::atomic<int> released{0};
  corio::run([](std::atomic<int>& released) -> corio::Task<> {
    struct WaitsInDestructor {
      std::shared_future<void> gate;
      std::atomic<int>* released;  // 1: by the gate, -1: by the time limit
      bool armed = true;
      WaitsInDestructor(std::shared_future<void> g, std::atomic<int>* r) : gate(std::move(g)), released(r) {}
      WaitsInDestructor(WaitsInDestructor&& o) noexcept
          : gate(o.gate), released(o.released), armed(std::exchange(o.armed, false)) {}
      ~WaitsInDestructor() {
        if (armed) *released = gate.wait_for(10s) == std::future_status::ready ? 1 : -1;
      }
      int operator()() const { return 1; }
    };
    std::promise<void> gate;
    WaitsInDestructor first(gate.get_future().share(), &released);
    EXPECT_EQ(co_await corio::to_thread(std::move(first)), 1);  // returned; its destructor now waits
    auto second = [] { return 2; };
    EXPECT_EQ(co_await corio::to_thread(second), 2);
    gate.set_value();
  }(released));
  // Closing the loop joined its pool: the destructor has returned.
  EXPECT_EQ(released, 1) << "the destructor gave up waiting: the second call was held up";
}

TEST(ToThread, MoveOnlyArgument) {
  corio::run(
      []() -> corio::Task<> {
        int v = co_await corio::to_thread([](std::unique_ptr<int> p) { return *p * 2; },
                                          std::make_unique<int>(21));
        EXPECT_EQ(v, 42);
      }(),
      kVirtual);
}

TEST(ToThread, ExceptionsCrossIntact) {
  corio::run(
      []() -> corio::Task<> {
        bool caught = false;
        try {
          (void)co_await corio::to_thread([]() -> int { throw MyError("bad thing on a worker"); });
        } catch (const MyError& e) {
          caught = true;
          EXPECT_STREQ(e.what(), "bad thing on a worker");
        }
        EXPECT_TRUE(caught);
        caught = false;
        try {
          co_await corio::to_thread([] { throw MyError("void too"); });
        } catch (const MyError& e) {
          caught = true;
          EXPECT_STREQ(e.what(), "void too");
        }
        EXPECT_TRUE(caught);
        // Not a std::exception at all.
        caught = false;
        try {
          co_await corio::to_thread([] { throw 17; });
        } catch (int x) {
          caught = true;
          EXPECT_EQ(x, 17);
        }
        EXPECT_TRUE(caught);
        // The pool survives throwing jobs.
        EXPECT_EQ(co_await corio::to_thread([] { return 1; }), 1);
      }(),
      kVirtual);
}

// Counts live instances, to see a dropped result destroyed exactly once.
struct Tracked {
  static inline std::atomic<int> live{0};
  int v;
  explicit Tracked(int x) : v(x) { ++live; }
  Tracked(const Tracked& o) : v(o.v) { ++live; }
  Tracked& operator=(const Tracked&) = default;
  ~Tracked() { --live; }
};

TEST(ToThread, CancelStopsWaitingWhileTheThreadRunsOn) {
  Tracked::live = 0;
  corio::run(
      []() -> corio::Task<> {
        std::promise<void> started;
        std::promise<void> gate;
        std::shared_future<void> gate_f = gate.get_future().share();
        std::atomic<bool> finished{false};
        auto t = corio::create_task(corio::to_thread([&started, gate_f, &finished] {
          started.set_value();
          gate_f.wait();
          finished = true;
          return Tracked(9);
        }));
        auto started_f = started.get_future();
        co_await turn_until([&] { return is_ready(started_f); });  // the worker is inside the call
        EXPECT_EQ(inhibitors(), 1);
        EXPECT_TRUE(t.cancel("stop"));
        bool cancelled = false;
        try {
          (void)co_await t;
        } catch (const corio::CancelledError& e) {
          cancelled = true;
          EXPECT_EQ(e.message(), "stop");
        }
        EXPECT_TRUE(cancelled);
        EXPECT_TRUE(t.cancelled());
        EXPECT_FALSE(finished);  // the awaiter stopped waiting; the call is still blocked
        // The loop goes on while the call is blocked.
        co_await turn_until([n = 0]() mutable { return ++n == 100; });
        EXPECT_FALSE(finished);
        gate.set_value();
        // The completion arrives, finds nobody waiting and drops the result.
        co_await turn_until([] { return inhibitors() == 0; });
        EXPECT_TRUE(finished);
        EXPECT_EQ(Tracked::live.load(), 0);
        // Virtual time jumps again now that no call is pending.
        co_await corio::sleep(1h);
      }(),
      kVirtual);
  EXPECT_EQ(Tracked::live.load(), 0);
}

TEST(ToThread, CancelledBeforeItStartsSubmitsNothing) {
  PoolSizeReset reset;
  corio::run(
      []() -> corio::Task<> {
        corio::set_to_thread_workers(1);
        std::atomic<bool> ran{false};
        auto t = corio::create_task(corio::to_thread([&ran] { ran = true; }));
        t.cancel();
        co_await turn_until([&] { return t.done(); });
        EXPECT_TRUE(t.cancelled());
        EXPECT_EQ(inhibitors(), 0);
        // Let any job that might have been submitted run: a later call on this one-thread pool comes after.
        co_await corio::to_thread([] {});
        EXPECT_FALSE(ran);
      }(),
      kVirtual);
}

TEST(ToThread, CancelAfterTheCallReturnedButBeforeTheTaskRan) {
  corio::run(
      []() -> corio::Task<> {
        std::promise<void> done_p;
        auto done_f = done_p.get_future();
        auto t = corio::create_task(corio::to_thread([&done_p] {
          done_p.set_value();
          return 3;
        }));
        co_await turn_until([&] { return is_ready(done_f); });  // the call returned; completion on its way
        t.cancel();
        bool cancelled = false;
        try {
          (void)co_await t;
        } catch (const corio::CancelledError&) {
          cancelled = true;
        }
        EXPECT_TRUE(cancelled);
        co_await turn_until([] { return inhibitors() == 0; });
      }(),
      kVirtual);
}

TEST(ToThread, LoopStaysResponsiveWhile100CallsBlock) {
  static constexpr int kCalls = 100;
  PoolSizeReset reset;
  corio::run(
      []() -> corio::Task<> {
        corio::set_to_thread_workers(kCalls);
        std::latch all_started(kCalls);
        std::promise<void> gate;
        std::shared_future<void> gate_f = gate.get_future().share();
        std::vector<corio::TaskHandle<int>> calls;
        for (int i = 0; i < kCalls; ++i)
          calls.push_back(corio::create_task(corio::to_thread(
              [&all_started, gate_f](int i) {
                all_started.count_down();
                gate_f.wait();
                return i * i;
              },
              i)));
        // A loop task ticks while every call is blocked.
        int ticks = 0;
        auto ticker = corio::create_task([](int& ticks) -> corio::Task<> {
          for (int k = 0; k < 1000; ++k) {
            co_await corio::sleep(0s);
            ++ticks;
          }
        }(ticks));
        co_await turn_until([&] { return all_started.try_wait(); });  // 100 calls blocked at once
        co_await ticker;
        EXPECT_EQ(ticks, 1000);
        for (auto& c : calls) EXPECT_FALSE(c.done());
        gate.set_value();
        for (int i = 0; i < kCalls; ++i) EXPECT_EQ(co_await calls[i], i * i);
      }(),
      kVirtual);
}

TEST(ToThread, PoolSizeBoundsConcurrency) {
  PoolSizeReset reset;
  corio::run(
      []() -> corio::Task<> {
        corio::set_to_thread_workers(2);
        EXPECT_EQ(corio::detail::loop_thread_pool().max_threads(), 2u);
        static constexpr int kCalls = 6;
        std::mutex mu;
        int running = 0;
        int max_running = 0;
        std::set<std::thread::id> threads;
        std::vector<std::promise<void>> gates(kCalls);
        std::vector<std::shared_future<void>> gate_fs;
        for (auto& g : gates) gate_fs.push_back(g.get_future().share());
        std::atomic<int> started{0};
        std::vector<corio::TaskHandle<int>> calls;
        for (int i = 0; i < kCalls; ++i)
          calls.push_back(corio::create_task(corio::to_thread([&, i] {
            {
              std::lock_guard<std::mutex> lock(mu);
              max_running = std::max(max_running, ++running);
              threads.insert(std::this_thread::get_id());
            }
            ++started;
            gate_fs[i].wait();
            {
              std::lock_guard<std::mutex> lock(mu);
              --running;
            }
            return i;
          })));
        // Jobs start in submission order; release each one only once it has started.
        for (int i = 0; i < kCalls; ++i) {
          co_await turn_until([&] { return started.load() >= std::min(i + 2, kCalls); });
          {
            std::lock_guard<std::mutex> lock(mu);
            EXPECT_LE(running, 2);
          }
          gates[i].set_value();
        }
        for (int i = 0; i < kCalls; ++i) EXPECT_EQ(co_await calls[i], i);
        std::lock_guard<std::mutex> lock(mu);
        EXPECT_EQ(max_running, 2);
        EXPECT_EQ(threads.size(), 2u);
      }(),
      kVirtual);
}

// Resizing while a call is running must not block the loop on that call (here the call waits for the loop).
TEST(ToThread, ResizeWhileACallIsRunning) {
  PoolSizeReset reset;
  corio::run(
      []() -> corio::Task<> {
        corio::set_to_thread_workers(4);
        std::promise<void> started;
        auto started_f = started.get_future();
        std::promise<void> gate;
        std::shared_future<void> gate_f = gate.get_future().share();
        auto t = corio::create_task(corio::to_thread([&started, gate_f] {
          started.set_value();
          gate_f.wait();
          return 1;
        }));
        co_await turn_until([&] { return is_ready(started_f); });
        corio::set_to_thread_workers(1);  // returns at once; the running call keeps its thread
        EXPECT_EQ(corio::detail::loop_thread_pool().max_threads(), 1u);
        EXPECT_EQ(co_await corio::to_thread([] { return 2; }), 2);  // the new pool serves new calls
        gate.set_value();
        EXPECT_EQ(co_await t, 1);
      }(),
      kVirtual);
}

// The process's threads (Linux: the entries of /proc/self/task).
std::size_t live_threads() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// A pool replaced by set_to_thread_workers lets its threads go once their calls are done: resizing back and
// forth kept every old pool's idle threads until the loop shut down (one more thread per resize).
TEST(ToThread, ResizingDoesNotPileUpThreads) {
  PoolSizeReset reset;
  corio::run([]() -> corio::Task<> {
    const std::size_t before = live_threads();
    for (int i = 0; i < 60; ++i) {
      corio::set_to_thread_workers(2 + i % 2);
      EXPECT_EQ(co_await corio::to_thread([i] { return i; }), i);
    }
    // The old pools' threads exit on their own; wait for that (a deadline, not a timing assertion).
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (live_threads() > before + 3 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    EXPECT_LE(live_threads(), before + 3);
  }());
}

TEST(ToThread, DefaultPoolSize) {
  corio::run(
      []() -> corio::Task<> {
        unsigned cores = std::thread::hardware_concurrency();
        std::size_t expected = std::min<std::size_t>(32, (cores ? cores : 1) + 4);
        EXPECT_EQ(corio::detail::loop_thread_pool().max_threads(), expected);
        co_return;
      }(),
      kVirtual);
  // A size set for one run and then reset to 0 goes back to the default.
  PoolSizeReset reset;
  corio::set_to_thread_workers(3);
  corio::run(
      []() -> corio::Task<> {
        EXPECT_EQ(corio::detail::loop_thread_pool().max_threads(), 3u);
        co_return;
      }(),
      kVirtual);
  corio::set_to_thread_workers(0);
  corio::run(
      []() -> corio::Task<> {
        unsigned cores = std::thread::hardware_concurrency();
        EXPECT_EQ(corio::detail::loop_thread_pool().max_threads(),
                  std::min<std::size_t>(32, (cores ? cores : 1) + 4));
        co_return;
      }(),
      kVirtual);
}

TEST(ToThread, ManyQuickCallsAllReturn) {
  corio::run(
      []() -> corio::Task<> {
        std::vector<corio::TaskHandle<int>> hs;
        for (int i = 0; i < 500; ++i)
          hs.push_back(corio::create_task(corio::to_thread([](int x) { return x + 1; }, i)));
        for (int i = 0; i < 500; ++i) EXPECT_EQ(co_await hs[i], i + 1);
      }(),
      kVirtual);
}

corio::Task<int> add_later(int a, int b) {
  co_await corio::sleep(0s);
  co_return a + b;
}

corio::Task<int> fail_later(std::string msg) {
  co_await corio::sleep(0s);
  throw MyError(msg);
}

corio::Task<> set_flag_later(std::atomic<bool>& flag) {
  co_await corio::sleep(0s);
  flag = true;
}

corio::Task<int> value_after(std::chrono::milliseconds delay, int value) {
  co_await corio::sleep(delay);
  co_return value;
}

// Under virtual time the clock does not jump while a thread call is in flight; it follows real time
// instead of standing still: a call that waits for a timer of the loop (here through
// run_coroutine_threadsafe) gets it. The clock stood still until the call returned: a deadlock, bounded
// here by the call's own 10 s wait.
TEST(ToThread, UnderVirtualTimeACallWaitingForATimerOfTheLoopGetsIt) {
  corio::run(
      []() -> corio::Task<> {
        corio::EventLoop& loop = corio::get_running_loop();
        const double t0 = loop.time();
        auto call = [&loop] {
          std::future<int> f = corio::run_coroutine_threadsafe(value_after(50ms, 7), loop);
          if (f.wait_for(10s) != std::future_status::ready) return -1;
          return f.get();
        };
        const int got = co_await corio::to_thread(call);  // (named: g++ 12 and lambda temporaries)
        EXPECT_EQ(got, 7);
        EXPECT_GE(loop.time() - t0, 0.05);
        co_await corio::sleep(1h);  // and jumps again once no call is in flight
        EXPECT_GE(loop.time() - t0, 3600.0);
      }(),
      kVirtual);
}

// The same for a timeout around a thread call under virtual time: it expires while the call is still
// blocked (it expired only once the call had returned, so a test of a hung call hung).
TEST(ToThread, UnderVirtualTimeATimeoutExpiresWhileTheCallIsBlocked) {
  corio::run(
      []() -> corio::Task<> {
        std::promise<void> gate;
        std::shared_future<void> gate_f = gate.get_future().share();
        std::atomic<bool> released_by_gate{false};
        auto blocked = [gate_f, &released_by_gate] {
          released_by_gate = gate_f.wait_for(10s) == std::future_status::ready;
        };
        bool timed_out = false;
        try {
          co_await corio::wait_for(corio::to_thread(blocked), 50ms);
        } catch (const corio::TimeoutError&) {
          timed_out = true;
        }
        EXPECT_TRUE(timed_out);
        gate.set_value();
        co_await turn_until([] { return inhibitors() == 0; });
        // The call returned, released by the gate (not by its own 10 s limit): the timeout came while it was
        // still blocked.
        EXPECT_TRUE(released_by_gate);
      }(),
      kVirtual);
}

TEST(RunCoroutineThreadsafe, FromAnotherThread) {
  corio::run(
      []() -> corio::Task<> {
        corio::EventLoop& loop = corio::get_running_loop();
        const auto loop_thread = std::this_thread::get_id();
        corio::Event done;
        int value = 0;
        std::string error;
        std::atomic<bool> flag{false};
        std::thread::id coro_thread;
        std::thread other([&] {
          // A value.
          value = corio::run_coroutine_threadsafe(add_later(40, 2), loop).get();
          // An exception, intact.
          try {
            corio::run_coroutine_threadsafe(fail_later("remote failure"), loop).get();
          } catch (const MyError& e) {
            error = e.what();
          }
          // void.
          corio::run_coroutine_threadsafe(set_flag_later(flag), loop).get();
          // Runs on the loop's thread.
          coro_thread =
              corio::run_coroutine_threadsafe(
                  []() -> corio::Task<std::thread::id> { co_return std::this_thread::get_id(); }(), loop)
                  .get();
          loop.call_soon_threadsafe([&done] { done.set(); });
        });
        co_await done.wait();
        other.join();
        EXPECT_EQ(value, 42);
        EXPECT_EQ(error, "remote failure");
        EXPECT_TRUE(flag);
        EXPECT_EQ(coro_thread, loop_thread);
      }(),
      kVirtual);
}

TEST(RunCoroutineThreadsafe, ManyThreadsAtOnce) {
  corio::run(
      []() -> corio::Task<> {
        corio::EventLoop& loop = corio::get_running_loop();
        static constexpr int kThreads = 8;
        std::atomic<int> remaining{kThreads};
        std::vector<int> results(kThreads, 0);
        corio::Event done;
        std::vector<std::thread> ts;
        for (int i = 0; i < kThreads; ++i)
          ts.emplace_back([&, i] {
            results[i] = corio::run_coroutine_threadsafe(add_later(i, 100), loop).get();
            if (--remaining == 0) loop.call_soon_threadsafe([&done] { done.set(); });
          });
        co_await done.wait();
        for (auto& t : ts) t.join();
        for (int i = 0; i < kThreads; ++i) EXPECT_EQ(results[i], i + 100);
      }(),
      kVirtual);
}

// Suspends until cancelled; signals `started` once it runs.
corio::Task<int> wait_forever(std::promise<void>* started) {
  corio::Event never;
  if (started) started->set_value();
  co_await never.wait();
  co_return 0;
}

TEST(RunCoroutineThreadsafe, CancelFromTheCallerThread) {
  corio::run(
      []() -> corio::Task<> {
        corio::EventLoop& loop = corio::get_running_loop();
        corio::Event done;
        std::string outcome_running;
        std::string outcome_unstarted;
        std::thread other([&] {
          auto what = [](auto& f) -> std::string {
            try {
              f.get();
              return "value";
            } catch (const corio::CancelledError&) {
              return "cancelled";
            } catch (const std::future_error& e) {
              return std::string("future_error: ") + e.what();
            }
          };
          // Cancelled while it is suspended.
          std::promise<void> started;
          auto started_f = started.get_future();
          auto f1 = corio::run_coroutine_threadsafe(wait_forever(&started), loop);
          started_f.wait();
          f1.cancel();
          outcome_running = what(f1);
          // Cancelled at once, most likely before its first step: still CancelledError, never a broken
          // promise.
          auto f2 = corio::run_coroutine_threadsafe(wait_forever(nullptr), loop);
          f2.cancel();
          outcome_unstarted = what(f2);
          loop.call_soon_threadsafe([&done] { done.set(); });
        });
        co_await done.wait();
        other.join();
        EXPECT_EQ(outcome_running, "cancelled");
        EXPECT_EQ(outcome_unstarted, "cancelled");
      }(),
      kVirtual);
}

// The future outlives the loop's task and is dropped on the caller's thread (TSan checks no loop-only state
// is touched there).
TEST(RunCoroutineThreadsafe, FutureDroppedOnTheCallerThread) {
  corio::run(
      []() -> corio::Task<> {
        corio::EventLoop& loop = corio::get_running_loop();
        corio::Event done;
        std::thread other([&] {
          for (int i = 0; i < 50; ++i) {
            auto f = corio::run_coroutine_threadsafe(add_later(i, 1), loop);
            if (i % 2 == 0) {
              EXPECT_EQ(f.get(), i + 1);
            }  // odd i: dropped without waiting
          }
          loop.call_soon_threadsafe([&done] { done.set(); });
        });
        co_await done.wait();
        other.join();
        co_await corio::sleep(0s);
      }(),
      kVirtual);
}

// ThreadsafeFuture::cancel() once the loop is gone (it must not post to a destroyed loop: ASan and TSan
// check that) and the future's outcome for each way the loop can let go of the task.
TEST(RunCoroutineThreadsafe, CancelAfterTheLoopIsGone) {
  auto loop = std::make_unique<corio::EventLoop>(kVirtual);
  // Finished before the loop went.
  auto finished = corio::run_coroutine_threadsafe(add_later(40, 2), *loop);
  loop->run_until_complete(turn_until([&] { return is_ready(finished); }));
  // Suspended when the loop went: the loop's close() destroyed its frame.
  std::promise<void> started;
  auto started_f = started.get_future();
  auto suspended = corio::run_coroutine_threadsafe(wait_forever(&started), *loop);
  loop->run_until_complete(turn_until([&] { return is_ready(started_f); }));
  // Never started: posted to the loop, which never ran again.
  auto unstarted = corio::run_coroutine_threadsafe(wait_forever(nullptr), *loop);
  loop.reset();
  finished.cancel();
  suspended.cancel();
  unstarted.cancel();
  EXPECT_EQ(finished.get(), 42);
  EXPECT_THROW(suspended.get(), corio::CancelledError);
  EXPECT_THROW(unstarted.get(), corio::CancelledError);  // not a broken promise
}

// cancel() from another thread while the loop's thread destroys the loop (TSan checks the hand-off).
TEST(RunCoroutineThreadsafe, CancelRacingTheLoopsDestruction) {
  for (int round = 0; round < 20; ++round) {
    auto loop = std::make_unique<corio::EventLoop>(kVirtual);
    std::promise<void> started;
    auto started_f = started.get_future();
    auto f = corio::run_coroutine_threadsafe(wait_forever(&started), *loop);
    loop->run_until_complete(turn_until([&] { return is_ready(started_f); }));
    std::atomic<bool> stop{false};
    std::latch cancelling(1);
    std::thread canceller([&] {
      f.cancel();
      cancelling.count_down();
      while (!stop.load()) f.cancel();
    });
    cancelling.wait();
    loop.reset();
    stop = true;
    canceller.join();
    EXPECT_THROW(f.get(), corio::CancelledError);
  }
}

// A loop made on one thread and run on another. asyncio allows it; corio's epoll backend does too, but an
// io_uring ring set up with SINGLE_ISSUER serves only the thread that made it, so running it elsewhere is a
// RuntimeError that says why and what to do (not the kernel's bare EEXIST from io_uring_enter).
TEST(EventLoopThreads, RunOnAnotherThreadThanTheLoopsOwn) {
  corio::EventLoop loop;
  auto work = []() -> corio::Task<int> {
    co_await corio::sleep(0s);
    co_return 42;
  };
  int result = 0;
  std::string error;
  std::thread worker([&] {
    try {
      result = loop.run_until_complete(work());
    } catch (const corio::RuntimeError& e) {
      error = e.what();
    }
  });
  worker.join();
  if (loop.backend() == corio::Backend::io_uring) {
    EXPECT_EQ(result, 0);
    EXPECT_NE(error.find("SINGLE_ISSUER"), std::string::npos) << error;
    EXPECT_NE(error.find("epoll"), std::string::npos) << error;
  } else {
    EXPECT_EQ(result, 42) << error;
  }
  EXPECT_EQ(loop.run_until_complete(work()), 42);  // on its own thread, it runs
}

}  // namespace

// A loop closed directly (EventLoop, no run()) while a to_thread call it stopped waiting for still runs:
// close() waits for the call, whose result is dropped. (It used to leave the thread running, which then
// posted its result to the destroyed loop: a use-after-free.)
TEST(ToThread, ClosingTheLoopWaitsForCallsStillRunning) {
  std::latch go(1);  // holds the call until the loop is about to close
  std::atomic<bool> finished{false};
  {
    corio::EventLoop loop;
    loop.run_until_complete([](std::latch& go, std::atomic<bool>& finished) -> corio::Task<> {
      auto slow = corio::create_task(corio::to_thread([&go, &finished] {
        go.wait();
        std::this_thread::sleep_for(50ms);  // the rest of the work, still going on as the loop closes
        finished = true;
      }));
      co_await corio::sleep(0s);  // it starts on the pool
      slow.cancel();              // stop waiting: the thread runs on
      try {
        co_await slow;
      } catch (const corio::CancelledError&) {
      }
    }(go, finished));
    EXPECT_FALSE(finished);
    go.count_down();
    // Leaving the block destroys the loop, which closes it.
  }
  EXPECT_TRUE(finished);  // joined by close()
}

// cancel() on a moved-from ThreadsafeFuture throws std::future_error(no_state), as get() does on one
// (it dereferenced a null pointer).
TEST(RunCoroutineThreadsafe, CancelOnAMovedFromFutureThrowsNoState) {
  corio::EventLoop loop;
  auto fut = corio::run_coroutine_threadsafe([]() -> corio::Task<int> { co_return 1; }(), loop);
  auto moved = std::move(fut);
  try {
    fut.cancel();  // NOLINT(bugprone-use-after-move): the moved-from state is what is tested
    ADD_FAILURE() << "no exception";
  } catch (const std::future_error& e) {
    EXPECT_EQ(e.code(), std::future_errc::no_state);
  }
  loop.run_until_complete([](decltype(moved)& f) -> corio::Task<> {
    while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) co_await corio::sleep(0s);
  }(moved));
  EXPECT_EQ(moved.get(), 1);
}

// A to_thread call still running when run() shuts down, and using the loop meanwhile
// (run_coroutine_threadsafe(...).get()): run() joins the pool while the loop still runs, as asyncio's
// shutdown_default_executor does, so the call's round trips are served and run() returns. (It joined with
// the loop stopped: the call waited for the loop, the loop for the call, for ever.)
TEST(ToThread, RunServesACallStillRunningAtShutdownThatUsesTheLoop) {
  std::promise<void> main_returning;
  std::atomic<int> round_trips{0};
  std::atomic<int> cancelled{0};
  corio::run([](std::promise<void>& main_returning, std::atomic<int>& round_trips,
                std::atomic<int>& cancelled) -> corio::Task<> {
    corio::EventLoop* loop = &corio::get_running_loop();
    auto job = [loop, &round_trips, &cancelled](std::shared_future<void> go) {
      go.wait();  // main is returning: the rest happens during run()'s shutdown
      for (int i = 0; i < 3; ++i) {
        try {
          round_trips +=
              corio::run_coroutine_threadsafe([]() -> corio::Task<int> { co_return 1; }(), *loop).get();
        } catch (const corio::CancelledError&) {
          // A call whose task already ran when run() cancelled the tasks left over is cancelled with them,
          // as in asyncio; at most one is (the job makes one call at a time).
          ++cancelled;
        }
      }
    };
    (void)corio::create_task(corio::to_thread(job, main_returning.get_future().share()));
    co_await corio::sleep(0s);  // the job starts on the pool
    main_returning.set_value();
  }(main_returning, round_trips, cancelled));
  EXPECT_EQ(round_trips + cancelled, 3);  // every call came back: none waited for ever
  EXPECT_LE(cancelled, 1);
}

// A coroutine whose frame is about 800 bytes (the array lives across the suspension), still pooled.
corio::Task<int> big_frame(int i) {
  std::array<char, 700> pad{};
  pad[static_cast<std::size_t>(i) % pad.size()] = 1;
  co_await corio::sleep(0s);
  co_return pad[static_cast<std::size_t>(i) % pad.size()] + i;
}

// A coroutine frame made on one thread and destroyed on another goes back to the thread that made it: a
// thread that calls run_coroutine_threadsafe again and again reuses its memory instead of carving more
// (before, the frames piled up on the loop thread's free lists and the caller carved new ones: 6,000 calls
// took three more chunks).
TEST(FramePool, FramesFreedOnTheLoopsThreadGoBackToTheThreadThatMadeThem) {
  using corio::detail::FrameAllocator;
  if (!FrameAllocator::pooled()) GTEST_SKIP() << "built without the frame pool (CORIO_FRAME_POOL=OFF)";
  corio::run(
      []() -> corio::Task<> {
        corio::EventLoop& loop = corio::get_running_loop();
        corio::Event done;
        std::size_t grew = 0;
        int sum = 0;
        std::thread other([&] {
          for (int i = 0; i < 100; ++i) sum += corio::run_coroutine_threadsafe(big_frame(i), loop).get();
          const std::size_t before = FrameAllocator::carved_bytes();
          for (int i = 0; i < 6'000; ++i) sum += corio::run_coroutine_threadsafe(big_frame(0), loop).get();
          grew = FrameAllocator::carved_bytes() - before;
          loop.call_soon_threadsafe([&done] { done.set(); });
        });
        co_await done.wait();
        other.join();
        EXPECT_EQ(sum, 100 * 99 / 2 + 100 + 6'000);
        EXPECT_LE(grew, FrameAllocator::kChunk);
      }(),
      kVirtual);
}

// A thread that exits leaves its heap, free lists included, to the next thread that needs one.
TEST(FramePool, AThreadThatExitsLeavesItsMemoryToTheNext) {
  using corio::detail::FrameAllocator;
  if (!FrameAllocator::pooled()) GTEST_SKIP() << "built without the frame pool (CORIO_FRAME_POOL=OFF)";
  std::size_t first = 0;
  std::thread([&] {
    // Three chunks' worth of blocks, all freed again.
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < 3 * FrameAllocator::kChunk / 512; ++i)
      blocks.push_back(FrameAllocator::allocate(512));
    for (void* b : blocks) FrameAllocator::deallocate(b, 512);
    first = FrameAllocator::carved_bytes();
  }).join();
  ASSERT_GE(first, 3 * FrameAllocator::kChunk);
  std::size_t second = 0;
  std::thread([&] {
    void* b = FrameAllocator::allocate(512);  // from the free lists the first thread left
    second = FrameAllocator::carved_bytes();
    FrameAllocator::deallocate(b, 512);
  }).join();
  EXPECT_GE(second, first);  // a heap of its own would have carved one chunk (kChunk bytes)
}

// A task cancelled through its future before its first step is not "never awaited" in debug mode: it is
// scheduled on its own and cancelled as a task (it sat unstarted in the bridge's frame, which destroyed it
// unrun), as asyncio's run_coroutine_threadsafe wraps the coroutine in a task.
TEST(RunCoroutineThreadsafe, CancelledBeforeItsFirstStepIsNotReportedNeverAwaited) {
  std::vector<std::string> logs;
  auto prev = corio::set_log_handler([&logs](std::string_view m) { logs.emplace_back(m); });
  bool cancelled = false;
  corio::run(
      [](bool& cancelled) -> corio::Task<> {
        corio::EventLoop& loop = corio::get_running_loop();
        corio::Event done;
        std::latch posted(1);
        std::thread other([&] {
          auto f = corio::run_coroutine_threadsafe(add_later(1, 2), loop);
          f.cancel();
          posted.count_down();
          try {
            (void)f.get();
          } catch (const corio::CancelledError&) {
            cancelled = true;
          }
          loop.call_soon_threadsafe([&done] { done.set(); });
        });
        posted.wait();  // (blocks the loop) both posts wait: the cancel comes before the task's first step
        co_await done.wait();
        other.join();
      }(cancelled),
      corio::RunOptions{.debug = true});
  corio::set_log_handler(prev);
  EXPECT_TRUE(cancelled);
  for (const auto& l : logs) EXPECT_EQ(l.find("never awaited"), std::string::npos) << l;
}

// Each loop has its own to_thread pool, even when two loops take turns on one thread: the second loop's
// first to_thread made a new pool in the thread's one slot, destroying (joining) the first loop's pool on
// the spot, so it waited for the first loop's calls (for ever, if such a call waited for its loop).
TEST(ToThread, TwoLoopsOnOneThreadDoNotShareAPool) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> a_started;
  std::future<void> started = a_started.get_future();
  std::atomic<bool> timed_out{false};
  corio::EventLoop a;
  corio::TaskHandle<void> pending;
  a.run_until_complete([](corio::TaskHandle<void>& pending, std::promise<void>& a_started,
                          std::shared_future<void> released, std::atomic<bool>& timed_out) -> corio::Task<> {
    pending = corio::create_task(corio::to_thread([&a_started, released, &timed_out] {
      a_started.set_value();
      // Bounded only so that the failure ends: B's call returned long before, when the pools are apart.
      if (released.wait_for(10s) != std::future_status::ready) timed_out = true;
    }));
    co_await corio::sleep(0s);  // the call is submitted to A's pool
  }(pending, a_started, released, timed_out));
  started.wait();  // A's call runs on A's pool
  corio::EventLoop b;
  int v = b.run_until_complete(
      []() -> corio::Task<int> { co_return co_await corio::to_thread([] { return 7; }); }());
  release.set_value();
  EXPECT_EQ(v, 7);
  a.run_until_complete([](corio::TaskHandle<void> h) -> corio::Task<> { co_await h; }(pending));
  EXPECT_FALSE(timed_out) << "loop B waited for loop A's call";
}

// A child forked from a thread where corio blocked signals (a to_thread worker blocks nearly all; the loop's
// thread blocks SIGINT under run()) and exec'd by hand inherited that mask: SIGTERM or Ctrl-C could not
// stop it. Python blocks nothing there; the child now gets the mask the program itself had.
namespace {
// The signals blocked in a child forked from the calling thread, as "2 15 ..." (the child writes its
// mask into a pipe and exits).
std::string blocked_in_forked_child() {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    sigset_t m;
    ::pthread_sigmask(SIG_BLOCK, nullptr, &m);
    ssize_t w = ::write(fds[1], &m, sizeof m);
    ::_exit(w == static_cast<ssize_t>(sizeof m) ? 0 : 1);
  }
  ::close(fds[1]);
  sigset_t m;
  ssize_t n = ::read(fds[0], &m, sizeof m);
  ::close(fds[0]);
  ::waitpid(pid, nullptr, 0);
  if (n != static_cast<ssize_t>(sizeof m)) return "no mask";
  std::string out;
  for (int sig = 1; sig < NSIG; ++sig)
    if (sigismember(&m, sig) == 1) out += std::to_string(sig) + " ";
  return out;
}

corio::Task<std::string> blocked_in_child_of_a_worker() {
  co_return co_await corio::to_thread(blocked_in_forked_child);
}
corio::Task<std::string> blocked_in_child_of_the_loop_thread() { co_return blocked_in_forked_child(); }
}  // namespace

TEST(ToThread, AChildForkedFromAWorkerHasTheProgramsSignalMask) {
  const std::string program = blocked_in_forked_child();
  EXPECT_EQ(corio::run(blocked_in_child_of_a_worker()), program);
}

TEST(ToThread, AChildForkedFromTheLoopThreadHasTheProgramsSignalMask) {
  const std::string program = blocked_in_forked_child();
  EXPECT_EQ(corio::run(blocked_in_child_of_the_loop_thread()), program);
}

namespace {
int g_quick_returned = 0;  // quick_42() reached its co_return
corio::Task<int> quick_42(int k) {
  for (int i = 0; i < k; ++i) co_await corio::sleep(0s);
  ++g_quick_returned;
  co_return 42;
}
corio::Task<corio::ThreadsafeFuture<int>> post_then_return(int k, int j) {
  auto f = corio::run_coroutine_threadsafe(quick_42(k), corio::get_running_loop());
  for (int i = 0; i < j; ++i) co_await corio::sleep(0s);
  co_return f;
}
}  // namespace

// asyncio: a task of run_coroutine_threadsafe that returned a value puts it in the future, also when it
// returned on the turn run() began its shutdown (its done callback runs in _cancel_all_tasks' turns).
// Python 3.11 gives 42 for every (k, j) where the coroutine returned.
TEST(RunCoroutineThreadsafe, AValueReturnedAsRunShutsDownReachesTheFuture) {
  for (int k = 0; k < 4; ++k) {
    for (int j = 0; j < 5; ++j) {
      g_quick_returned = 0;
      auto f = corio::run(post_then_return(k, j));
      std::string got;
      try {
        got = std::to_string(f.get());
      } catch (const corio::CancelledError&) {
        got = "CancelledError";
      }
      // (Given 3 turns more than its k, the coroutine has surely returned before run() ended: without this
      // the test checked nothing if it never did.)
      if (j >= k + 3) {
        EXPECT_TRUE(g_quick_returned) << "k=" << k << " j=" << j;
      }
      if (g_quick_returned) {
        EXPECT_EQ(got, "42") << "k=" << k << " j=" << j;
      }
    }
  }
}
