// 04: 100,000 concurrent tasks, each sleeping 1 s, finish in about 1 s.
//
// A task is a coroutine frame plus a small state block, both from a recycling allocator; sleeping puts it
// in the loop's timer heap. Memory per task = (peak RSS - RSS before) / N.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

constexpr int kTasks = 100'000;

long current_rss_bytes() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * sysconf(_SC_PAGESIZE);
}

long peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss * 1024L;  // Linux reports kilobytes
}

int finished = 0;

corio::Task<> worker() {
  co_await corio::sleep(1s);
  ++finished;
}

corio::Task<> amain() {
  const long rss_before = current_rss_bytes();
  const double start = corio::get_running_loop().time();

  std::vector<corio::Task<>> tasks;
  tasks.reserve(kTasks);
  for (int i = 0; i < kTasks; ++i) tasks.push_back(worker());
  co_await corio::gather(std::move(tasks));  // schedules each as a task, waits for all

  const double elapsed = corio::get_running_loop().time() - start;
  const long per_task = (peak_rss_bytes() - rss_before) / kTasks;
  std::printf("%d tasks slept 1 s each; all %d finished in %.2f s\n", kTasks, finished, elapsed);
  std::printf("peak memory: about %ld bytes per task\n", per_task);
}

int main() { corio::run(amain()); }
