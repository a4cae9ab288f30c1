// 08: one thread, one loop: a TCP server and 10,000 concurrent client connections against it.
//
// The program starts a line-echo server on 127.0.0.1 (port 0), then
//   1. fans out 10,000 client tasks at once; each connects, waits until all are connected (so 10,000
//      connections are open at the same time), sends a line, reads the echo and closes;
//   2. keeps 1,000 connections open and has each do 20 round trips, all concurrently.
// Both sides run in the same loop, so every number below counts the client's and the server's work.
//
// Every open connection costs two descriptors here (the client's and the server's), so the program first
// raises RLIMIT_NOFILE to 20,064 (the hard limit too, where it may: root); a Semaphore keeps the connections
// open at once within what the limit allows (and says so when that is fewer than 10,000). A second Semaphore
// keeps at most 1,024 connection attempts in flight: the kernel queues at most `backlog` (here 4,096, Linux's
// default somaxconn) connections the server has not accepted yet and drops further SYNs, which the client
// would retry only after one second.
//
// Exits with status 1 if any client failed (the output says how many, and the first error).
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "corio/corio.hpp"

constexpr int kConnections = 10'000;
constexpr int kKeepAlive = 1'000;
constexpr int kRoundTrips = 20;
constexpr int kBacklog = 4096;
constexpr int kConnecting = 1024;       // connection attempts in flight, well under the backlog
constexpr long kSpareDescriptors = 64;  // stdio, the listener, epoll, eventfd, ...

double now() { return corio::get_running_loop().time(); }

// Raises the descriptor limit to what 10,000 connections need: the hard limit too where that is allowed
// (root), else the soft limit up to the hard one. Returns the soft limit in force.
long raise_nofile_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
  const rlim_t need = 2 * kConnections + kSpareDescriptors;
  if (lim.rlim_cur < need) {
    rlimit want{need, std::max(need, lim.rlim_max)};
    if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
      want = lim;
      want.rlim_cur = lim.rlim_max;
    }
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) lim = want;
  }
  return lim.rlim_cur == RLIM_INFINITY ? 1L << 20 : static_cast<long>(lim.rlim_cur);
}

// The server: echoes each line until the client half-closes, then closes its side.
corio::Task<> echo_lines(corio::StreamReader reader, corio::StreamWriter writer) {
  for (;;) {
    std::string line = co_await reader.readline();
    if (line.empty()) co_return;  // EOF: returning drops the streams, which closes the connection
    writer.write(line);
    co_await writer.drain();
  }
}

struct Stats {
  int ok = 0;
  int failed = 0;
  int open = 0;
  int max_open = 0;
  int arrived = 0;  // connected or failed
  int gate_at = 0;  // the `all_open` event is set when this many have arrived
  std::string first_error;
};

struct Limits {
  corio::Semaphore open;        // connections open at once (descriptors)
  corio::Semaphore connecting;  // connection attempts in flight (listen backlog)
  corio::Event all_open;        // every connection that fits is open: start talking
};

void arrive(Stats& st, Limits& limits) {
  if (++st.arrived == st.gate_at) limits.all_open.set();
}

// Opens a connection, holding a `connecting` permit only while connecting.
corio::Task<std::pair<corio::StreamReader, corio::StreamWriter>> connect(std::uint16_t port, Limits& limits) {
  co_await limits.connecting.acquire();
  try {
    auto conn = co_await corio::open_connection("127.0.0.1", port);
    limits.connecting.release();
    co_return conn;
  } catch (...) {
    limits.connecting.release();
    throw;
  }
}

// Connects, waits until the others are connected too, does `trips` round trips, half-closes and waits
// for the server to close: once this returns both descriptors are closed, so the `open` Semaphore counts
// descriptors exactly.
corio::Task<> client(std::uint16_t port, int id, int trips, Limits& limits, Stats& st) {
  co_await limits.open.acquire();
  bool counted = false;
  try {
    auto [reader, writer] = co_await connect(port, limits);
    st.max_open = std::max(st.max_open, ++st.open);
    counted = true;
    arrive(st, limits);
    co_await limits.all_open.wait();
    for (int t = 0; t < trips; ++t) {
      std::string line = "client " + std::to_string(id) + " trip " + std::to_string(t) + "\n";
      writer.write(line);
      co_await writer.drain();
      if (co_await reader.readline() != line) throw corio::Error("wrong echo");
    }
    writer.write_eof();
    co_await reader.read();  // "" once the server has closed its side
    writer.close();
    ++st.ok;
  } catch (const std::exception& e) {
    if (!counted) arrive(st, limits);
    if (st.failed++ == 0) st.first_error = e.what();
  }
  if (counted) --st.open;
  limits.open.release();
}

// n clients at once; the first min(n, open permits) connect, wait for each other, then talk.
corio::Task<> run_clients(std::uint16_t port, int n, int trips, Limits& limits, Stats& st) {
  st.gate_at = std::min(n, static_cast<int>(limits.open.value()));
  limits.all_open.clear();
  std::vector<corio::Task<>> clients;
  clients.reserve(n);
  for (int i = 0; i < n; ++i) clients.push_back(client(port, i, trips, limits, st));
  co_await corio::gather(std::move(clients));
}

void report(const Stats& st) {
  std::printf("    %d succeeded, %d failed; %d connections open at once at the peak\n", st.ok, st.failed,
              st.max_open);
  if (st.failed) std::printf("    first error: %s\n", st.first_error.c_str());
}

// Returns the exit status: 1 if any client failed.
corio::Task<int> amain() {
  const double t0 = now();
  const long nofile = raise_nofile_limit();
  const long fit = std::max(1L, (nofile - kSpareDescriptors) / 2);
  const int concurrency = static_cast<int>(std::min<long>(kConnections, fit));
  std::printf("RLIMIT_NOFILE = %ld: room for %ld connections at 2 descriptors each\n", nofile, fit);
  if (concurrency < kConnections)
    std::printf(
        "  -> concurrency lowered to %d connections open at once; the other %d clients wait for a slot "
        "(Semaphore)\n",
        concurrency, kConnections - concurrency);

  corio::ServerOptions options;
  options.backlog = kBacklog;
  corio::Server server = co_await corio::start_server(echo_lines, "127.0.0.1", 0, options);
  const std::uint16_t port = server.port();
  std::printf("server listening on 127.0.0.1:%u\n", static_cast<unsigned>(port));
  Limits limits{corio::Semaphore(static_cast<std::size_t>(concurrency)), corio::Semaphore(kConnecting), {}};

  std::printf(
      "1. %d concurrent clients: connect, (wait until all are connected,) send a line, read the echo, "
      "close\n",
      kConnections);
  std::printf("   (at most %d connection attempts in flight; listen backlog %d)\n", kConnecting, kBacklog);
  Stats fan;
  double start = now();
  co_await run_clients(port, kConnections, 1, limits, fan);
  double elapsed = now() - start;
  report(fan);
  std::printf("    %.2f s: %.0f connections/s, %.0f round trips/s (one per connection)\n", elapsed,
              fan.ok / elapsed, fan.ok / elapsed);

  std::printf("2. %d connections kept open, %d round trips each, all at once\n", kKeepAlive, kRoundTrips);
  Stats keep;
  start = now();
  co_await run_clients(port, kKeepAlive, kRoundTrips, limits, keep);
  elapsed = now() - start;
  report(keep);
  std::printf("    %.2f s: %.0f round trips/s\n", elapsed, keep.ok * kRoundTrips / elapsed);

  server.close();
  co_await server.wait_closed();
  std::printf("server closed after serving %d connections; total time %.2f s\n", fan.ok + keep.ok,
              now() - t0);
  if (fan.failed + keep.failed > 0) {
    std::fflush(stdout);  // keeps the order when both go to one pipe
    std::fprintf(stderr, "FAILED: %d of %d clients failed\n", fan.failed + keep.failed,
                 kConnections + kKeepAlive);
    co_return 1;
  }
  co_return 0;
}

int main() { return corio::run(amain()); }
