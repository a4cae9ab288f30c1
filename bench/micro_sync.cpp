// Micro-benchmarks of corio's sync primitives (Google Benchmark). Each benchmark runs its whole measuring
// loop inside a single corio::run(): the body is a coroutine that loops on state.KeepRunning(), so loop
// creation, helper-task creation and shutdown are outside the timed region. items_processed counts the unit
// named below, so 1e9 / items_per_second is the time per unit (bench/report.py prints it).
//
//   BM_SemaphoreUncontended   co_await acquire() + release() on a free Semaphore, nobody waiting
//                             (item = one acquire/release pair)
//   BM_SemaphoreHandoff/1000  Semaphore(1) and 1,000 tasks looping acquire -> release, so every release
//                             hands the permit to the longest waiter (item = one handoff: release in one
//                             task -> acquire returns in the next)
//   BM_LockHandoff            two tasks looping acquire -> release on one Lock; strict FIFO makes every
//                             release a handoff to the other task (item = one handoff)
//   BM_EventFanOut/10000      10,000 tasks parked in Event::wait(); one set() wakes them all, and the
//                             iteration ends when the last one has run (item = one waiter woken and run)
//   BM_QueuePutGetNoSuspend   co_await put() + co_await get() on an unbounded Queue in one task: the
//                             cost of the two Task-returning calls when neither suspends (item = pair)
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/sync/event.hpp"
#include "corio/sync/lock.hpp"
#include "corio/sync/queue.hpp"
#include "corio/sync/semaphore.hpp"

namespace {

using namespace std::chrono_literals;

// ---- Semaphore, uncontended

corio::Task<> sem_uncontended_body(benchmark::State& state) {
  corio::Semaphore sem(1);
  while (state.KeepRunning()) {
    co_await sem.acquire();
    sem.release();
  }
  state.SetItemsProcessed(state.iterations());
}
void BM_SemaphoreUncontended(benchmark::State& state) { corio::run(sem_uncontended_body(state)); }
BENCHMARK(BM_SemaphoreUncontended);

// ---- Semaphore handoff through N waiters

corio::Task<> sem_worker(corio::Semaphore& sem, const bool& stop, std::int64_t& handoffs) {
  for (;;) {
    co_await sem.acquire();
    ++handoffs;
    const bool done = stop;
    sem.release();
    if (done) co_return;
  }
}

corio::Task<> sem_handoff_body(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  corio::Semaphore sem(1);
  bool stop = false;
  std::int64_t handoffs = 0;
  co_await sem.acquire();  // hold the only permit so every worker parks
  std::vector<corio::TaskHandle<>> workers;
  workers.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) workers.push_back(corio::create_task(sem_worker(sem, stop, handoffs)));
  co_await corio::sleep(0s);  // let them all park in acquire()
  handoffs = 0;
  while (state.KeepRunning()) {
    sem.release();           // hands the permit to the first worker ...
    co_await sem.acquire();  // ... and we get it back after all N have taken and released it in turn
    ++handoffs;
  }
  const std::int64_t counted = handoffs;
  stop = true;
  sem.release();
  for (auto& w : workers) co_await w;
  if (counted != state.iterations() * (n + 1)) state.SkipWithError("unexpected handoff count");
  state.SetItemsProcessed(counted);
}
void BM_SemaphoreHandoff(benchmark::State& state) { corio::run(sem_handoff_body(state)); }
BENCHMARK(BM_SemaphoreHandoff)->Arg(1000);

// ---- Lock handoff between two tasks

corio::Task<> lock_worker(corio::Lock& lock, const bool& stop, std::int64_t& handoffs) {
  for (;;) {
    co_await lock.acquire();
    ++handoffs;
    const bool done = stop;
    lock.release();
    if (done) co_return;
  }
}

corio::Task<> lock_handoff_body(benchmark::State& state) {
  corio::Lock lock;
  bool stop = false;
  std::int64_t handoffs = 0;
  co_await lock.acquire();
  auto worker = corio::create_task(lock_worker(lock, stop, handoffs));
  co_await corio::sleep(0s);  // the worker parks in acquire()
  handoffs = 0;
  while (state.KeepRunning()) {
    lock.release();  // handoff to the worker, which takes it, releases -> handoff back to us
    co_await lock.acquire();
    ++handoffs;
  }
  const std::int64_t counted = handoffs;
  stop = true;
  lock.release();
  co_await worker;
  if (counted != state.iterations() * 2) state.SkipWithError("unexpected handoff count");
  state.SetItemsProcessed(counted);
}
void BM_LockHandoff(benchmark::State& state) { corio::run(lock_handoff_body(state)); }
BENCHMARK(BM_LockHandoff);

// ---- Event fan-out: one set() wakes N waiters

struct FanOut {
  corio::Event go[2];  // round r waits on go[r % 2]; the other one is clear while round r runs
  corio::Event done;   // set by the last waiter of a round
  int n = 0;
  int woken = 0;
  bool stop = false;
};

corio::Task<> fan_waiter(FanOut& f) {
  for (unsigned round = 0;; ++round) {
    co_await f.go[round % 2].wait();
    if (f.stop) co_return;
    if (++f.woken == f.n) f.done.set();
  }
}

corio::Task<> event_fanout_body(benchmark::State& state) {
  FanOut f;
  f.n = static_cast<int>(state.range(0));
  std::vector<corio::TaskHandle<>> waiters;
  waiters.reserve(static_cast<std::size_t>(f.n));
  for (int i = 0; i < f.n; ++i) waiters.push_back(corio::create_task(fan_waiter(f)));
  co_await corio::sleep(0s);  // let them all park on go[0]
  unsigned round = 0;
  while (state.KeepRunning()) {
    f.woken = 0;
    f.go[round % 2].set();   // wakes all N; each re-parks on go[(round + 1) % 2], already clear
    co_await f.done.wait();  // the last one to run sets done
    f.done.clear();
    f.go[round % 2].clear();  // nobody waits on it any more: every waiter has moved on
    ++round;
  }
  f.stop = true;
  f.go[round % 2].set();
  for (auto& w : waiters) co_await w;
  state.SetItemsProcessed(state.iterations() * f.n);
}
void BM_EventFanOut(benchmark::State& state) { corio::run(event_fanout_body(state)); }
BENCHMARK(BM_EventFanOut)->Arg(10000);

// ---- Queue put + get in one task, never suspending

corio::Task<> queue_nosuspend_body(benchmark::State& state) {
  corio::Queue<long> q;
  long i = 0;
  while (state.KeepRunning()) {
    co_await q.put(i++);
    long v = co_await q.get();
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
void BM_QueuePutGetNoSuspend(benchmark::State& state) { corio::run(queue_nosuspend_body(state)); }
BENCHMARK(BM_QueuePutGetNoSuspend);

}  // namespace

BENCHMARK_MAIN();
