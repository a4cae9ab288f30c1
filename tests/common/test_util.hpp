// Helpers shared by the tests of several layers (core, flow, sync, thread): assertions usable inside
// coroutines, virtual-time run options, loop-turn helpers, small value helpers, and helpers that destroy
// parked tasks. Not a test binary of its own (no *_test.cpp here); a test includes it as
// "common/test_util.hpp".
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>
#include <version>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

#include "common/co_assert.hpp"

namespace corio_test {

using namespace std::chrono_literals;

// What debug mode says of where a task was created (create_task called at `line` of `file`, in function
// `fn`): "created at file:line" where the standard library has std::source_location (g++), else the
// function's name alone, "created in 'fn'" (clang 14 with libstdc++). Call with __FILE__, the line and
// __func__.
inline std::string created_site(const char* file, int line, const char* fn) {
#if defined(__cpp_lib_source_location)
  (void)fn;
  return std::string("created at ") + file + ":" + std::to_string(line);
#else
  (void)file;
  (void)line;
  return std::string("created in '") + fn + "'";
#endif
}

// Run options for virtual time: the clock jumps to the next timer whenever nothing is ready (instant sleeps).
inline constexpr corio::RunOptions kVirtual{.virtual_time = true};

// An ordered record of what happened, compared whole with EXPECT_EQ.
using Log = std::vector<std::string>;

// The running loop's clock in seconds (the virtual clock under kVirtual).
inline double now() { return corio::get_running_loop().time(); }

// Lets the loop run `n` turns (sleep(0s) yields exactly one).
inline corio::Task<> turns(int n = 1) {
  for (int i = 0; i < n; ++i) co_await corio::sleep(0s);
}

// Lets the loop turn until `ready()` (each turn also takes in callbacks posted from other threads).
template <class F>
corio::Task<> turn_until(F ready) {
  while (!ready()) co_await corio::sleep(0s);
}

// {0, 1, ..., n-1}.
inline std::vector<int> iota(int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Returns `v` after sleeping `d`; if `finished` is given, appends `v` to it on completion (completion order).
inline corio::Task<int> value_after(int v, std::chrono::milliseconds d,
                                    std::vector<int>* finished = nullptr) {
  co_await corio::sleep(d);
  if (finished) finished->push_back(v);
  co_return v;
}

// Runs `body()` to completion on a loop of its own (virtual time), then destroys that loop with whatever
// tasks `body` left suspended: their frames are destroyed without being resumed or cancelled, as when a
// program drops a loop. The loop lives on the heap, so ASan reports anything that touches it afterwards.
template <class F>
void run_then_drop_loop(F body) {
  auto loop = std::make_unique<corio::EventLoop>(kVirtual);
  loop->run_until_complete(body());
  loop.reset();
}

// Counts its own destruction: one in a coroutine frame shows the frame was destroyed.
struct FrameGuard {
  int* destroyed;
  ~FrameGuard() { ++*destroyed; }
};

// A task that parks at `co_await wait` (any awaitable) and records what becomes of it: "cancelled" if it is
// resumed with CancelledError, "resumed" if it runs on; `destroyed` counts its frame's destruction.
template <class A>
corio::Task<> parked(A wait, Log& log, int& destroyed) {
  FrameGuard guard{&destroyed};
  try {
    co_await std::move(wait);
  } catch (const corio::CancelledError&) {
    log.push_back("cancelled");
    throw;
  }
  log.push_back("resumed");
}

// Lets the loop turn until some task is suspended at a waiter that describes itself as `what` ("lock",
// "semaphore", "queue get"; see TaskHandle::awaiting()) or until `give_up()` is true. True if one was found.
template <class F>
corio::Task<bool> until_parked_at(std::string what, F give_up) {
  for (;;) {
    for (auto& t : corio::all_tasks())
      if (t.awaiting() == what) co_return true;
    if (give_up()) co_return false;
    co_await corio::sleep(0s);
  }
}

// Keeps the loop's thread busy until the loop's clock (real time: not under kVirtual) reads past `t`, so
// that every timer due by `t` expires in the next turn, together with the tasks already ready (which run
// first; the timers' work after them). For tests of what happens when a timeout and a wake-up land in the
// same turn; it orders nothing between threads.
inline void spin_past(double t) {
  while (now() <= t) {
  }
}

}  // namespace corio_test
