// W4 TCP echo: one process, one loop. An echo server on 127.0.0.1:0 (handler: readexactly(64), write,
// drain) and C client connections (default 100), each doing N round trips of 64 bytes (write 64 B,
// drain, readexactly(64)). All clients connect first; the timed part is from the first round trip of any
// client to the last reply of every client (steady clock). Prints round trips per second.
//
// Usage: corio_bench_w4_echo [N [C]]   (default N = 10,000 round trips per client, C = 100 clients)
// Output: one line "RESULT workload=w4 impl=corio backend=... n=... conns=... rt_per_s=... ns_per_rt=...
// user_ns_per_rt=... sys_ns_per_rt=..." (the process's user and kernel CPU time over the timed part, per
// round trip) (backend: the one the loop ran on, epoll or io_uring; CORIO_BACKEND chooses it)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/server.hpp"
#include "corio/net/stream.hpp"
#include "cpu_time.hpp"

namespace {

constexpr std::size_t kMsg = 64;

corio::Task<> echo(corio::StreamReader r, corio::StreamWriter w) {
  for (;;) {
    std::string data;
    try {
      data = co_await r.readexactly(kMsg);
    } catch (const corio::IncompleteReadError&) {
      break;  // the client closed
    }
    w.write(data);
    co_await w.drain();
  }
  w.close();
}

corio::Task<long> client(corio::StreamReader r, corio::StreamWriter w, int n) {
  const std::string msg(kMsg, 'x');
  long ok = 0;
  for (int i = 0; i < n; ++i) {
    w.write(msg);
    co_await w.drain();
    std::string reply = co_await r.readexactly(kMsg);
    ok += reply == msg;
  }
  w.close();
  co_await w.wait_closed();
  co_return ok;
}

struct Outcome {
  double seconds;
  corio_bench::CpuTime cpu;
  long ok;
  corio::Backend backend;
};

corio::Task<Outcome> bench(int n, int conns) {
  corio::Server server =
      co_await corio::start_server(echo, "127.0.0.1", 0, corio::ServerOptions{.backlog = 1024});
  std::vector<std::pair<corio::StreamReader, corio::StreamWriter>> streams;
  streams.reserve(static_cast<std::size_t>(conns));
  for (int c = 0; c < conns; ++c)
    streams.push_back(co_await corio::open_connection("127.0.0.1", server.port()));
  const auto t0 = std::chrono::steady_clock::now();
  const corio_bench::CpuTime cpu0 = corio_bench::cpu_time();
  std::vector<corio::TaskHandle<long>> clients;
  clients.reserve(static_cast<std::size_t>(conns));
  for (auto& [r, w] : streams) clients.push_back(corio::create_task(client(std::move(r), std::move(w), n)));
  long ok = 0;
  for (auto& h : clients) ok += co_await h;
  const auto t1 = std::chrono::steady_clock::now();
  const corio_bench::CpuTime cpu1 = corio_bench::cpu_time();
  server.close();
  co_await server.wait_closed();
  co_return Outcome{std::chrono::duration<double>(t1 - t0).count(),
                    {cpu1.user_s - cpu0.user_s, cpu1.sys_s - cpu0.sys_s},
                    ok,
                    corio::get_running_loop().backend()};
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 10'000;
  const int conns = argc > 2 ? std::atoi(argv[2]) : 100;
  if (n <= 0 || conns <= 0) {
    std::fprintf(stderr, "usage: %s [N > 0 [C > 0]]\n", argv[0]);
    return 2;
  }
  const Outcome r = corio::run(bench(n, conns));
  const long total = static_cast<long>(n) * conns;
  if (r.ok != total) {
    std::fprintf(stderr, "w4: %ld of %ld replies were correct\n", r.ok, total);
    return 1;
  }
  std::printf(
      "RESULT workload=w4 impl=corio backend=%s n=%d conns=%d rt_per_s=%.0f ns_per_rt=%.1f "
      "user_ns_per_rt=%.1f "
      "sys_ns_per_rt=%.1f\n",
      r.backend == corio::Backend::io_uring ? "io_uring" : "epoll", n, conns,
      static_cast<double>(total) / r.seconds, r.seconds * 1e9 / static_cast<double>(total),
      r.cpu.user_s * 1e9 / static_cast<double>(total), r.cpu.sys_s * 1e9 / static_cast<double>(total));
  return 0;
}
