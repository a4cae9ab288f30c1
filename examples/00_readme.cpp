// The program shown in README.md (keep the two identical): two "downloads" run concurrently and take one
// second, not two.
#include <chrono>
#include <cstdio>
#include <string>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

corio::Task<std::string> fetch(std::string url) {
  co_await corio::sleep(1s);  // stands for a network call
  co_return "<page of " + url + ">";
}

corio::Task<> amain() {
  double start = corio::get_running_loop().time();
  auto [a, b] = co_await corio::gather(fetch("a.example"), fetch("b.example"));
  std::printf("%s %s in %.2f s\n", a.c_str(), b.c_str(), corio::get_running_loop().time() - start);
}

int main() { corio::run(amain()); }  // <page of a.example> <page of b.example> in 1.00 s
