// 02: `co_await task` runs it and yields its value, or rethrows its exception.
//
// Awaiting composes like a function call: the caller suspends, the callee runs to its end, and its
// co_return value (or the exception that escaped it) comes back at the co_await. corio::run does the same
// for the program's main coroutine.
#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

corio::Task<int> answer() {
  co_await corio::sleep(10ms);
  co_return 42;
}

corio::Task<int> broken() {
  co_await corio::sleep(10ms);
  throw std::runtime_error("the server said no");
}

corio::Task<int> sum_of_answers() { co_return co_await answer() + co_await answer(); }

corio::Task<int> amain() {
  int value = co_await answer();
  std::printf("co_await answer()          -> %d\n", value);
  std::printf("co_await sum_of_answers()  -> %d\n", co_await sum_of_answers());
  try {
    co_await broken();
  } catch (const std::runtime_error& e) {
    std::printf("co_await broken()          -> threw std::runtime_error: %s\n", e.what());
  }
  co_return 7;
}

corio::Task<> failing_main() {
  co_await corio::sleep(0s);
  throw std::logic_error("main failed");
}

int main() {
  int code = corio::run(amain());
  std::printf("corio::run(amain())        -> %d (main's value)\n", code);
  try {
    corio::run(failing_main());
  } catch (const std::logic_error& e) {
    std::printf("corio::run(failing_main()) -> threw std::logic_error: %s\n", e.what());
  }
}
