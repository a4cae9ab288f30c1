// Idle connections: N (default 10,000) connections to a corio server, each server
// handler waiting in readline(). The client side is raw blocking sockets (no user-space state beyond
// an int each, in a child process). Reports (RSS once every handler waits in readline() - RSS before the
// first connect) / N: the server's per-connection cost, buffers, stream state, handler frame and the server's
// bookkeeping included. RSS is the current resident set (/proc/self/statm), not the peak. Also splits it,
// with the same before/after: the heap malloc has handed out (glibc mallinfo2: chunks in use, their headers
// and padding included, plus mmapped blocks), the free space malloc holds in its arena (touched pages that
// no allocation uses: fragmentation), and shared pages (statm's third field: io_uring's rings would show
// here if the kernel counted them).
//
// The raw clients run in a child process, so each process needs N + 100 descriptors: raises RLIMIT_NOFILE
// to that (the hard limit too where allowed), and exits with status 77 after a "SKIP" line when it cannot
// (scripts/bench then reruns it with the largest N that fits).
//
// Usage: corio_bench_idle_conns [N]
// Output: one line "RESULT workload=idle impl=corio backend=... n=... bytes_per_conn=... rss_before_mb=...
// rss_after_mb=... heap_bytes_per_conn=... heap_free_bytes_per_conn=... shared_bytes_per_conn=..." (backend:
// the one the loop ran on, epoll or io_uring; CORIO_BACKEND chooses it)
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/net/server.hpp"
#include "corio/net/stream.hpp"

namespace {

long waiting = 0;  // handlers that have entered readline()

corio::Task<> idle(corio::StreamReader r, corio::StreamWriter w) {
  ++waiting;
  std::string line = co_await r.readline();  // "" at EOF: the client closed
  --waiting;
  w.close();
}

struct Rss {
  long total, shared;
};
Rss rss_bytes() {
  long pages_total = 0, pages_rss = 0, pages_shared = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f || std::fscanf(f, "%ld %ld %ld", &pages_total, &pages_rss, &pages_shared) != 3) {
    std::perror("/proc/self/statm");
    std::exit(1);
  }
  std::fclose(f);
  const long page = sysconf(_SC_PAGESIZE);
  return {pages_rss * page, pages_shared * page};
}

// Bytes malloc has handed out and not taken back (uordblks + hblkhd: a chunk counts at the size the arena
// gave up for it), and bytes free in its arena (fordblks).
struct Heap {
  long used, free;
};
Heap heap_bytes() {
  const struct mallinfo2 mi = mallinfo2();
  return {static_cast<long>(mi.uordblks + mi.hblkhd), static_cast<long>(mi.fordblks)};
}

struct Outcome {
  Rss before, after;
  Heap heap_before, heap_after;
  corio::Backend backend;
};

// The client side, in a child process so that each process needs only N descriptors (the hard
// RLIMIT_NOFILE here is 20,000, and raising it needs CAP_SYS_RESOURCE): N blocking connects, then hold the
// connections until the parent writes to `release_fd`, then close them all and exit.
[[noreturn]] void clients(std::uint16_t port, int n, int release_fd) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  std::vector<int> fds;
  fds.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
      std::perror("idle clients: connect");
      _exit(1);
    }
    fds.push_back(fd);
  }
  char c;
  while (read(release_fd, &c, 1) < 0 && errno == EINTR) {
  }
  for (int fd : fds) close(fd);
  _exit(0);
}

corio::Task<Outcome> bench(int n) {
  using namespace std::chrono_literals;
  corio::Server server =
      co_await corio::start_server(idle, "127.0.0.1", 0, corio::ServerOptions{.backlog = 1024});
  co_await corio::sleep(0s);
  const Rss before = rss_bytes();
  const Heap heap_before = heap_bytes();
  int release[2];
  if (pipe2(release, O_CLOEXEC) != 0) {
    std::perror("pipe2");
    std::exit(1);
  }
  const pid_t child = fork();
  if (child < 0) {
    std::perror("fork");
    std::exit(1);
  }
  if (child == 0) {
    close(release[1]);
    clients(server.port(), n, release[0]);
  }
  close(release[0]);
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (waiting < n) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "idle: only %ld of %d handlers reached readline()\n", waiting, n);
      kill(child, SIGKILL);
      std::exit(1);
    }
    co_await corio::sleep(1ms);
  }
  for (int i = 0; i < 3; ++i) co_await corio::sleep(0s);  // every read submitted
  const Rss after = rss_bytes();
  const Heap heap_after = heap_bytes();
  if (write(release[1], "x", 1) != 1) std::perror("idle: release the clients");
  close(release[1]);
  while (waiting > 0 && std::chrono::steady_clock::now() < deadline) co_await corio::sleep(1ms);
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "idle: the client process failed\n");
    std::exit(1);
  }
  server.close();
  co_await server.wait_closed();
  co_return Outcome{before, after, heap_before, heap_after, corio::get_running_loop().backend()};
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 10'000;
  if (n <= 0) {
    std::fprintf(stderr, "usage: %s [N > 0]\n", argv[0]);
    return 2;
  }
  const rlim_t need = static_cast<rlim_t>(n) + 100;  // each process: the clients are in a child
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < need) {
    // Raising the hard limit needs CAP_SYS_RESOURCE (root, as in CI here); otherwise take what it allows.
    rlimit want{need, std::max(need, rl.rlim_max)};
    if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < need) {
    std::printf("SKIP idle: %d connections need %llu descriptors, RLIMIT_NOFILE hard limit is %llu\n", n,
                static_cast<unsigned long long>(need), static_cast<unsigned long long>(rl.rlim_max));
    return 77;
  }
  const Outcome r = corio::run(bench(n));
  const auto per_conn = [n](long after, long before) { return static_cast<double>(after - before) / n; };
  std::printf(
      "RESULT workload=idle impl=corio backend=%s n=%d bytes_per_conn=%.0f rss_before_mb=%.1f "
      "rss_after_mb=%.1f heap_bytes_per_conn=%.0f heap_free_bytes_per_conn=%.0f shared_bytes_per_conn=%.0f\n",
      r.backend == corio::Backend::io_uring ? "io_uring" : "epoll", n,
      per_conn(r.after.total, r.before.total), r.before.total / 1048576.0, r.after.total / 1048576.0,
      per_conn(r.heap_after.used, r.heap_before.used), per_conn(r.heap_after.free, r.heap_before.free),
      per_conn(r.after.shared, r.before.shared));
  return 0;
}
