// The process's CPU time, split into user and kernel time, for the benchmarks' RESULT lines: what a
// workload costs besides its wall time. getrusage(RUSAGE_SELF) counts every thread of the process (io_uring's
// io-wq workers too). Linux keeps the total exact but splits it between user and kernel in proportion to
// clock-tick samples, so a part that is only a few dozen ticks long in a run is coarse.
#pragma once

#include <sys/resource.h>

namespace corio_bench {

struct CpuTime {
  double user_s = 0;
  double sys_s = 0;
};

inline CpuTime cpu_time() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return {static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) * 1e-6,
          static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) * 1e-6};
}

}  // namespace corio_bench
