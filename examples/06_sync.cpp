// 06: synchronisation between tasks: Semaphore, Queue, Event (asyncio.Semaphore, asyncio.Queue, ...).
//
// All on one thread, like asyncio's: a primitive suspends the task that must wait and the loop resumes it
// on a later turn, in FIFO order. No mutex, no atomics.
//   1. A Semaphore(10) lets 100 "API calls" run at most 10 at a time.
//   2. A Queue(5) between one producer and three consumers; join() returns once every item put has been
//      marked task_done().
//   3. An Event: three tasks wait until one sets it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

double now() { return corio::get_running_loop().time(); }

// ---- 1. Semaphore

int in_flight = 0;
int max_in_flight = 0;

corio::Task<int> api_call(corio::Semaphore& sem, int i) {
  co_await sem.acquire();
  ++in_flight;
  max_in_flight = std::max(max_in_flight, in_flight);
  co_await corio::sleep(20ms);  // stands for the request
  --in_flight;
  sem.release();
  co_return i* i;
}

corio::Task<> semaphore_demo() {
  std::puts("1. Semaphore(10) around 100 API calls of 20 ms each:");
  corio::Semaphore sem(10);
  const double start = now();
  std::vector<corio::Task<int>> calls;
  for (int i = 0; i < 100; ++i) calls.push_back(api_call(sem, i));
  std::vector<int> results = co_await corio::gather(std::move(calls));
  long sum = 0;
  for (int r : results) sum += r;
  std::printf("    %zu calls done in %.2f s (10 waves of 20 ms); at most %d in flight; sum of results %ld\n",
              results.size(), now() - start, max_in_flight, sum);
}

// ---- 2. Queue

corio::Task<> producer(corio::Queue<std::string>& q, int n) {
  for (int i = 0; i < n; ++i) co_await q.put("job-" + std::to_string(i));  // waits while the queue is full
  std::printf("    producer: put %d jobs (queue size now %zu, maxsize %zu)\n", n, q.size(), q.maxsize());
}

corio::Task<> consumer(corio::Queue<std::string>& q, int id, int& handled) {
  for (;;) {
    std::string job = co_await q.get();  // waits while the queue is empty
    co_await corio::sleep(5ms);          // process it
    ++handled;
    if (job == "job-0" || job == "job-19") std::printf("    consumer %d: handled %s\n", id, job.c_str());
    q.task_done();
  }
}

corio::Task<> queue_demo() {
  std::puts("2. Queue(maxsize 5): one producer, three consumers, join():");
  corio::Queue<std::string> q(5);
  int handled[3] = {0, 0, 0};
  std::vector<corio::TaskHandle<>> consumers;
  for (int id = 0; id < 3; ++id) consumers.push_back(corio::create_task(consumer(q, id, handled[id])));
  const double start = now();
  co_await producer(q, 20);
  co_await q.join();  // every job put has been task_done()
  std::printf("    join() returned after %.3f s; jobs per consumer: %d %d %d\n", now() - start, handled[0],
              handled[1], handled[2]);
  for (auto& c : consumers) c.cancel();  // consumers loop forever: stop them
  for (auto& c : consumers) {
    try {
      co_await c;
    } catch (const corio::CancelledError&) {
    }
  }
  try {
    q.get_nowait();
  } catch (const corio::QueueEmpty& e) {
    std::printf("    get_nowait() on the empty queue: QueueEmpty (\"%s\")\n", e.what());
  }
}

// ---- 3. Event

corio::Task<> waiter(corio::Event& ev, std::string name, double start) {
  co_await ev.wait();
  std::printf("    %s: woke up at t = %.2f s\n", name.c_str(), now() - start);
}

corio::Task<> event_demo() {
  std::puts("3. Event: three waiters, set after 100 ms:");
  corio::Event ready;
  const double start = now();
  std::vector<corio::Task<>> waiters;
  for (const char* name : {"alpha", "beta", "gamma"}) waiters.push_back(waiter(ready, name, start));
  auto all = corio::create_task(corio::gather(std::move(waiters)));
  co_await corio::sleep(100ms);
  std::printf("    main: set() at t = %.2f s\n", now() - start);
  ready.set();
  co_await all;
  std::printf("    is_set() = %s\n", ready.is_set() ? "true" : "false");
}

corio::Task<> amain() {
  co_await semaphore_demo();
  co_await queue_demo();
  co_await event_demo();
}

int main() { corio::run(amain()); }
