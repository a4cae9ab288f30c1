// W3 ping-pong: two tasks pass a token back and forth through two unbounded corio::Queue<long>, N round
// trips. Prints ns per hop.
//
// A hop is one handoff of the token from one task to the other: the sender's `co_await q.put(token)` plus
// the receiver's `co_await q.get()` returning it (including the receiver's wake-up and resumption by the
// loop). One round trip (ping -> pong -> ping) is two hops, so a run makes 2 * N hops and
// ns_per_hop = elapsed / (2 * N). The clock (steady_clock) starts before the two tasks are created and
// stops after both have finished, inside one corio::run. bench/w3_pingpong.py does exactly the same.
// cpu_ns_per_hop is the process CPU time over the same span (CLOCK_PROCESS_CPUTIME_ID): on a loaded,
// shared machine it is the steadier figure.
//
// Usage: corio_bench_w3_pingpong [N]   (default 1,000,000 round trips = 2,000,000 hops)
// Output: one line "RESULT workload=w3 impl=corio n=... hops=... ns_per_hop=... cpu_ns_per_hop=..."
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "corio/core/run.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/sync/queue.hpp"

namespace {

// Sends 0, receives it back incremented, sends that on, ...; returns the last token received (== 2 * n).
corio::Task<long> ping(corio::Queue<long>& out, corio::Queue<long>& in, long n) {
  long token = 0;
  for (long i = 0; i < n; ++i) {
    co_await out.put(token);
    token = co_await in.get();
    ++token;
  }
  co_return token;
}

// Receives a token and sends it back incremented, n times.
corio::Task<long> pong(corio::Queue<long>& in, corio::Queue<long>& out, long n) {
  long token = 0;
  for (long i = 0; i < n; ++i) {
    token = co_await in.get();
    co_await out.put(token + 1);
  }
  co_return token;
}

double cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

struct Outcome {
  double ns_per_hop;
  double cpu_ns_per_hop;
  long last;
};

corio::Task<Outcome> bench(long n) {
  corio::Queue<long> to_pong;
  corio::Queue<long> to_ping;
  const double c0 = cpu_ns();
  const auto t0 = std::chrono::steady_clock::now();
  auto a = corio::create_task(ping(to_pong, to_ping, n));
  auto b = corio::create_task(pong(to_pong, to_ping, n));
  const long last = co_await a;
  co_await b;
  const auto t1 = std::chrono::steady_clock::now();
  const double c1 = cpu_ns();
  const double ns =
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
  const double hops = 2.0 * static_cast<double>(n);
  co_return Outcome{ns / hops, (c1 - c0) / hops, last};
}

}  // namespace

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 1'000'000;
  if (n <= 0) {
    std::fprintf(stderr, "usage: %s [N > 0]\n", argv[0]);
    return 2;
  }
  const Outcome r = corio::run(bench(n));
  if (r.last != 2 * n) {
    std::fprintf(stderr, "w3: wrong final token %ld, expected %ld\n", r.last, 2 * n);
    return 1;
  }
  std::printf("RESULT workload=w3 impl=corio n=%ld hops=%ld ns_per_hop=%.2f cpu_ns_per_hop=%.2f\n", n, 2 * n,
              r.ns_per_hop, r.cpu_ns_per_hop);
  return 0;
}
