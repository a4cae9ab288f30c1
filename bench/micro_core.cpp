// Micro-benchmarks of corio's core runtime (Google Benchmark). Each benchmark runs its whole measuring loop
// inside a single corio::run(): the body is a coroutine that loops on state.KeepRunning(), so the loop's
// creation and shutdown are outside the timed region.
//
//   BM_AwaitReadyTask        co_await of a lazy Task that co_returns at once (no scheduling)
//   BM_CreateTaskAwait       create_task + co_await of its handle, one at a time (one loop turn each)
//   BM_CreateTaskAwaitBatch  create_task N, then await the N handles (W1's pattern; time per task)
//   BM_SleepZeroYield        co_await sleep(0s): suspend, one loop turn, resume
//   BM_CallSoon              call_soon N callbacks, then yield one turn so they run (time per callback)
//   BM_TimerAddCancel        call_later(10s, f) then TimerHandle::cancel(), with Arg other timers pending
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

namespace {

using namespace std::chrono_literals;

corio::Task<int> ready(int i) { co_return i; }

// ---- co_await of a ready lazy Task

corio::Task<> await_ready_body(benchmark::State& state) {
  int i = 0;
  while (state.KeepRunning()) {
    int v = co_await ready(i++);
    benchmark::DoNotOptimize(v);
  }
}
void BM_AwaitReadyTask(benchmark::State& state) { corio::run(await_ready_body(state)); }
BENCHMARK(BM_AwaitReadyTask);

// ---- create_task + await, one at a time

corio::Task<> create_await_body(benchmark::State& state) {
  int i = 0;
  while (state.KeepRunning()) {
    corio::TaskHandle<int> h = corio::create_task(ready(i++));
    int v = co_await h;
    benchmark::DoNotOptimize(v);
  }
}
void BM_CreateTaskAwait(benchmark::State& state) { corio::run(create_await_body(state)); }
BENCHMARK(BM_CreateTaskAwait);

// ---- create_task N, then await the N handles

corio::Task<> create_await_batch_body(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<corio::TaskHandle<int>> handles;
  handles.reserve(static_cast<std::size_t>(n));
  while (state.KeepRunning()) {
    for (int i = 0; i < n; ++i) handles.push_back(corio::create_task(ready(i)));
    std::int64_t sum = 0;
    for (auto& h : handles) sum += co_await h;
    benchmark::DoNotOptimize(sum);
    handles.clear();
  }
  state.SetItemsProcessed(state.iterations() * n);
}
void BM_CreateTaskAwaitBatch(benchmark::State& state) { corio::run(create_await_batch_body(state)); }
BENCHMARK(BM_CreateTaskAwaitBatch)->Arg(1000);

// ---- sleep(0s) round trip

corio::Task<> sleep_zero_body(benchmark::State& state) {
  while (state.KeepRunning()) co_await corio::sleep(0s);
}
void BM_SleepZeroYield(benchmark::State& state) { corio::run(sleep_zero_body(state)); }
BENCHMARK(BM_SleepZeroYield);

// ---- call_soon N callbacks and run a turn

corio::Task<> call_soon_body(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  corio::EventLoop& loop = corio::get_running_loop();
  std::int64_t count = 0;
  while (state.KeepRunning()) {
    for (int i = 0; i < n; ++i) loop.call_soon([&count] { ++count; });
    co_await corio::sleep(0s);  // the callbacks run on the next turn, before this task resumes
  }
  if (count != static_cast<std::int64_t>(state.iterations()) * n)
    state.SkipWithError("callbacks did not run");
  state.SetItemsProcessed(state.iterations() * n);
}
void BM_CallSoon(benchmark::State& state) { corio::run(call_soon_body(state)); }
BENCHMARK(BM_CallSoon)->Arg(1)->Arg(1000);

// ---- call_later + cancel, with range(0) other timers pending in the heap

corio::Task<> timer_add_cancel_body(benchmark::State& state) {
  corio::EventLoop& loop = corio::get_running_loop();
  std::vector<corio::TimerHandle> background;
  for (std::int64_t i = 0; i < state.range(0); ++i)
    background.push_back(loop.call_later(std::chrono::seconds(3600 + i), [] {}));
  while (state.KeepRunning()) {
    corio::TimerHandle t = loop.call_later(10s, [] {});
    benchmark::DoNotOptimize(t);
    t.cancel();
  }
  for (auto& t : background) t.cancel();
  co_return;
}
void BM_TimerAddCancel(benchmark::State& state) { corio::run(timer_add_cancel_body(state)); }
BENCHMARK(BM_TimerAddCancel)->Arg(0)->Arg(10000);

}  // namespace

BENCHMARK_MAIN();
