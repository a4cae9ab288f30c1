// 01: a coroutine object does nothing until it is awaited.
//
// Calling a coroutine function returns a corio::Task and runs none of its body; `co_await` runs it. A Task
// dropped without being awaited never runs at all (the compiler warns: Task is [[nodiscard]]; debug mode
// also reports it at run time, as asyncio's "coroutine ... was never awaited").
#include <cstdio>
#include <string_view>

#include "corio/corio.hpp"

corio::Task<int> compute(int x) {
  std::puts("    compute(): body running");
  co_return x * 2;
}

corio::Task<> amain() {
  std::puts("calling compute(21)...");
  corio::Task<int> task = compute(21);
  std::puts("...it returned a Task, and its body has not run yet");

  std::puts("co_await task:");
  int value = co_await task;
  std::printf("co_await returned %d\n\n", value);

  std::puts("calling compute(0) and dropping the Task without co_await:");
  { corio::Task<int> forgotten = compute(0); }
  std::puts("its body never ran");
}

int main() {
  // Debug mode's reports go to stderr by default; send them to stdout to keep the output in order.
  corio::set_log_handler([](std::string_view msg) {
    std::printf("    [corio debug] %.*s\n", static_cast<int>(msg.size()), msg.data());
  });
  corio::run(amain(), corio::RunOptions{.debug = true});
}
