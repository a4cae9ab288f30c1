// The "bare C++20 ready-queue loop" that the W1 and W3 goals are set against, so that it runs on the same
// machine in the same run as corio: coroutines with a minimal promise (frames from operator new, no names,
// no cancellation, no introspection), a vector of handles as the ready queue, nothing else.
//
// Usage: corio_bench_bare_loop w1 [N]   N coroutines that return their index, all created, then run from the
//                                       ready queue and their results summed in order (default 1,000,000)
//        corio_bench_bare_loop w3 [N]   two coroutines pass a token back and forth N times through one-slot
//                                       channels, each hand-off a ready-queue push and pop (default
//                                       1,000,000)
// Output: "RESULT workload=w1 impl=bare n=... ns_per_task=... peak_rss_mb=..." or
//         "RESULT workload=w3 impl=bare n=... hops=... ns_per_hop=..."
#include <sys/resource.h>

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

namespace {

std::vector<std::coroutine_handle<>> ready;  // the loop's ready queue (FIFO: run from head_ on)
std::size_t head = 0;

void run_ready() {
  while (head < ready.size()) ready[head++].resume();
  ready.clear();
  head = 0;
}

template <class T>
struct Coro {
  struct promise_type {
    T value{};
    Coro get_return_object() { return Coro{std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_value(T v) noexcept { value = v; }
    [[noreturn]] void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
};

struct Void {
  struct promise_type {
    Void get_return_object() { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    [[noreturn]] void unhandled_exception() noexcept { std::terminate(); }
  };
};

Coro<int> coro(int i) { co_return i; }

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

int w1(int n) {
  std::vector<Coro<int>> tasks;
  tasks.reserve(static_cast<std::size_t>(n));
  ready.reserve(static_cast<std::size_t>(n));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    tasks.push_back(coro(i));
    ready.push_back(tasks.back().h);  // "create_task": scheduled for the next turn
  }
  run_ready();
  std::int64_t sum = 0;
  for (auto& t : tasks) {
    sum += t.h.promise().value;
    t.h.destroy();
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (sum != static_cast<std::int64_t>(n) * (n - 1) / 2) {
    std::fprintf(stderr, "bare w1: wrong sum\n");
    return 1;
  }
  const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
  std::printf("RESULT workload=w1 impl=bare n=%d ns_per_task=%.1f peak_rss_mb=%.1f\n", n, ns / n,
              peak_rss_mb());
  return 0;
}

// A one-slot channel: put() stores the token and schedules the waiting getter; get() suspends until then.
struct Channel {
  long token = 0;
  bool full = false;
  std::coroutine_handle<> getter;
  void put(long v) {
    token = v;
    full = true;
    if (getter) {
      ready.push_back(getter);
      getter = nullptr;
    }
  }
  struct Get {
    Channel& c;
    bool await_ready() const noexcept { return c.full; }
    void await_suspend(std::coroutine_handle<> h) noexcept { c.getter = h; }
    long await_resume() noexcept {
      c.full = false;
      return c.token;
    }
  };
  Get get() { return Get{*this}; }
};

Void pinger(Channel& to, Channel& from, int n, long& last) {
  for (int i = 0; i < n; ++i) {
    to.put(i);
    last = co_await from.get();
  }
}

Void ponger(Channel& from, Channel& to, int n) {
  for (int i = 0; i < n; ++i) to.put(co_await from.get() + 1);
}

int w3(int n) {
  Channel ping, pong;
  long last = -1;
  const auto t0 = std::chrono::steady_clock::now();
  ponger(ping, pong, n);  // runs until its first get() suspends
  pinger(ping, pong, n, last);
  // The loop: run what is ready until nothing is (ready grows while it runs; it is a FIFO).
  while (head < ready.size()) {
    std::coroutine_handle<> h = ready[head++];
    if (head == ready.size()) {
      ready.clear();
      head = 0;
    }
    h.resume();
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (last != n) {
    std::fprintf(stderr, "bare w3: wrong last token %ld\n", last);
    return 1;
  }
  const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
  std::printf("RESULT workload=w3 impl=bare n=%d hops=%ld ns_per_hop=%.2f\n", n, 2L * n, ns / (2.0 * n));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool is_w1 = argc > 1 && std::strcmp(argv[1], "w1") == 0;
  const bool is_w3 = argc > 1 && std::strcmp(argv[1], "w3") == 0;
  const int n = argc > 2 ? std::atoi(argv[2]) : 1'000'000;
  if ((!is_w1 && !is_w3) || n <= 0) {
    std::fprintf(stderr, "usage: %s w1|w3 [N > 0]\n", argv[0]);
    return 2;
  }
  return is_w1 ? w1(n) : w3(n);
}
