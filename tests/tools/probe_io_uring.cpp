// Exit status 0 if a loop can run on the io_uring backend here; otherwise prints why (scripts/test then
// skips the io_uring pass with that reason).
#include <cstdio>

#include "corio/corio.hpp"

int main() {
  try {
    corio::run([]() -> corio::Task<> { co_return; }(),
               corio::RunOptions{.backend = corio::Backend::io_uring});
    return 0;
  } catch (const std::exception& e) {
    std::printf("%s\n", e.what());
    return 1;
  }
}
