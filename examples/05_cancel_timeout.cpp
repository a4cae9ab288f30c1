// 05: cancellation, wait_for's timeout, and task_group failing fast.
//
// cancel() makes the co_await the task is suspended at throw CancelledError; the task may clean up and
// rethrow. CancelledError is not a std::exception, so `catch (const std::exception&)` never swallows it.
// wait_for cancels the work when the deadline passes, waits for it to end, then throws TimeoutError.
// task_group cancels the other children as soon as one fails, then throws an ExceptionGroup.
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

double now() { return corio::get_running_loop().time(); }

corio::Task<> download(std::string name, std::chrono::milliseconds how_long) {
  try {
    co_await corio::sleep(how_long);
    std::printf("    %s: finished\n", name.c_str());
  } catch (const corio::CancelledError& e) {
    std::printf("    %s: cancelled (\"%s\"), cleaning up\n", name.c_str(), e.what());
    throw;  // rethrow: the task ends cancelled
  }
}

corio::Task<> failing(std::chrono::milliseconds after) {
  co_await corio::sleep(after);
  throw std::runtime_error("connection reset");
}

corio::Task<> amain() {
  std::puts("1. cancel a running task:");
  corio::TaskHandle<> h = corio::create_task(download("big-file", 10s), "downloader");
  co_await corio::sleep(100ms);
  std::printf("    at %.3f '%s' is awaiting: %s\n", now(), h.get_name().c_str(), h.awaiting().c_str());
  h.cancel("user pressed stop");
  try {
    co_await h;
  } catch (const corio::CancelledError&) {
    std::printf("    co_await h threw CancelledError; h.cancelled() = %s\n",
                h.cancelled() ? "true" : "false");
  }

  std::puts("2. wait_for with a timeout:");
  double start = now();
  try {
    co_await corio::wait_for(download("slow-api", 10s), 200ms);
  } catch (const corio::TimeoutError& e) {
    std::printf("    TimeoutError (%s) after %.2f s; the work was cancelled first\n", e.what(),
                now() - start);
  }
  co_await corio::wait_for(download("fast-api", 50ms), 200ms);

  std::puts("3. task_group fails fast:");
  start = now();
  try {
    co_await corio::task_group([](corio::TaskGroup& tg) -> corio::Task<> {
      tg.create_task(download("mirror-1", 10s));
      tg.create_task(download("mirror-2", 10s));
      tg.create_task(failing(300ms));
      co_return;
    });
  } catch (const corio::ExceptionGroup& eg) {
    std::printf("    ExceptionGroup after %.2f s with %zu exception(s): %s\n", now() - start,
                eg.exceptions().size(), eg.what());
  }
}

int main() { corio::run(amain()); }
