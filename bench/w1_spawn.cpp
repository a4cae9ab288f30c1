// W1 spawn-and-await: create_task N coroutines that each return their index, keep the handles in a vector,
// then await them all in order and check the sum. Prints ns per task (spawn + await only, steady clock)
// and the process's peak RSS.
//
// Usage: corio_bench_w1_spawn [N]   (default 1,000,000)
// Output: one line "RESULT workload=w1 impl=corio n=... ns_per_task=... peak_rss_mb=..."
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "corio/core/run.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

namespace {

corio::Task<int> coro(int i) { co_return i; }

struct Outcome {
  double ns_per_task;
  std::int64_t sum;
};

corio::Task<Outcome> bench(int n) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<corio::TaskHandle<int>> handles;
  handles.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) handles.push_back(corio::create_task(coro(i)));
  std::int64_t sum = 0;
  for (auto& h : handles) sum += co_await h;
  const auto t1 = std::chrono::steady_clock::now();
  const double ns =
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
  co_return Outcome{ns / n, sum};
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 1'000'000;
  if (n <= 0) {
    std::fprintf(stderr, "usage: %s [N > 0]\n", argv[0]);
    return 2;
  }
  const Outcome r = corio::run(bench(n));
  const std::int64_t expected = static_cast<std::int64_t>(n) * (n - 1) / 2;
  if (r.sum != expected) {
    std::fprintf(stderr, "w1: wrong sum %lld, expected %lld\n", static_cast<long long>(r.sum),
                 static_cast<long long>(expected));
    return 1;
  }
  std::printf("RESULT workload=w1 impl=corio n=%d ns_per_task=%.1f peak_rss_mb=%.1f\n", n, r.ns_per_task,
              peak_rss_mb());
  return 0;
}
