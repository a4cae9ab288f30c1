// W2 many sleepers: N tasks that each co_await corio::sleep(1s). Reports the wall time from the first
// create_task until every task is done, and (peak RSS - baseline RSS) / N, the baseline being the peak RSS
// measured just before the first task is created (inside the running loop).
//
// Usage: corio_bench_w2_sleepers [N]   (default 100,000)
// Output: one line "RESULT workload=w2 impl=corio n=... wall_s=... bytes_per_task=... baseline_rss_mb=...
//         peak_rss_mb=..."
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

namespace {

using namespace std::chrono_literals;

corio::Task<> sleeper() { co_await corio::sleep(1s); }

long max_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // KiB on Linux
}

struct Outcome {
  double wall_s;
  long baseline_kib;
  long peak_kib;
};

corio::Task<Outcome> bench(int n) {
  const long baseline = max_rss_kib();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<corio::TaskHandle<>> handles;
  handles.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) handles.push_back(corio::create_task(sleeper()));
  for (auto& h : handles) co_await h;
  const auto t1 = std::chrono::steady_clock::now();
  const long peak = max_rss_kib();
  co_return Outcome{std::chrono::duration<double>(t1 - t0).count(), baseline, peak};
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 100'000;
  if (n <= 0) {
    std::fprintf(stderr, "usage: %s [N > 0]\n", argv[0]);
    return 2;
  }
  const Outcome r = corio::run(bench(n));
  const double bytes_per_task = static_cast<double>(r.peak_kib - r.baseline_kib) * 1024.0 / n;
  std::printf(
      "RESULT workload=w2 impl=corio n=%d wall_s=%.4f bytes_per_task=%.1f baseline_rss_mb=%.1f "
      "peak_rss_mb=%.1f\n",
      n, r.wall_s, bytes_per_task, static_cast<double>(r.baseline_kib) / 1024.0,
      static_cast<double>(r.peak_kib) / 1024.0);
  return 0;
}
