// Built by the install_consumer test against an installed corio (find_package(corio)).
#include <corio/corio.hpp>

#include <chrono>
#include <cstdio>

corio::Task<int> f() {
  co_await corio::sleep(std::chrono::milliseconds(1));
  co_return 42;
}

int main() {
  int result = corio::run(f());
  if (result != 42) {
    std::fprintf(stderr, "corio_consumer: expected 42, got %d\n", result);
    return 1;
  }
  std::puts("corio_consumer: OK");
  return 0;
}
