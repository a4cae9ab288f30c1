// 03: three slow "API calls", one after another (~3 s), then concurrently in the time of one (~1 s).
//
// `co_await call()` waits for each call before starting the next. create_task starts a call running
// concurrently and returns a handle to await later; gather starts several and collects their results in
// order. Times come from the loop's clock.
#include <chrono>
#include <cstdio>
#include <string>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

corio::Task<std::string> call_api(std::string endpoint) {
  co_await corio::sleep(1s);  // stands for a network round trip
  co_return endpoint + ": 200 OK";
}

double now() { return corio::get_running_loop().time(); }

corio::Task<> amain() {
  double start = now();
  std::string a = co_await call_api("/users");
  std::string b = co_await call_api("/orders");
  std::string c = co_await call_api("/stock");
  std::printf("sequential  (co_await each): %.2f s  [%s | %s | %s]\n", now() - start, a.c_str(), b.c_str(),
              c.c_str());

  start = now();
  corio::TaskHandle<std::string> ha = corio::create_task(call_api("/users"));
  corio::TaskHandle<std::string> hb = corio::create_task(call_api("/orders"));
  corio::TaskHandle<std::string> hc = corio::create_task(call_api("/stock"));
  a = co_await ha;  // all three are already running; this waits for the first
  b = co_await hb;
  c = co_await hc;
  std::printf("concurrent  (create_task):   %.2f s  [%s | %s | %s]\n", now() - start, a.c_str(), b.c_str(),
              c.c_str());

  start = now();
  auto [x, y, z] = co_await corio::gather(call_api("/users"), call_api("/orders"), call_api("/stock"));
  std::printf("concurrent  (gather):        %.2f s  [%s | %s | %s]\n", now() - start, x.c_str(), y.c_str(),
              z.c_str());
}

int main() { corio::run(amain()); }
