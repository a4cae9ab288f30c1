// W5 plaintext HTTP over the streams API: a minimal keep-alive responder, not an HTTP layer. Each
// connection loops: readuntil("\r\n\r\n"), write the fixed 13-byte "Hello, World!" response, drain.
// Listens on 127.0.0.1:0, prints "PORT <port>" on stdout, and serves until killed (SIGTERM) or until
// --seconds S have passed (default 120). scripts/bench pins it with taskset, loads it with wrk and reads
// its CPU time from /proc/<pid>/stat.
//
// Usage: corio_bench_w5_http [--seconds S]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string_view>

#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/server.hpp"
#include "corio/net/stream.hpp"

namespace {

constexpr std::string_view kResponse = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";

corio::Task<> respond(corio::StreamReader r, corio::StreamWriter w) {
  try {
    for (;;) {
      (void)co_await r.readuntil("\r\n\r\n");
      w.write(kResponse);
      co_await w.drain();
    }
  } catch (const corio::IncompleteReadError&) {  // the client closed between requests
  } catch (const corio::ConnectionError&) {      // reset by wrk at the end of its run
  }
  w.close();
}

corio::Task<> serve(double seconds) {
  corio::Server server =
      co_await corio::start_server(respond, "127.0.0.1", 0, corio::ServerOptions{.backlog = 1024});
  std::printf("PORT %u\n", static_cast<unsigned>(server.port()));
  std::fflush(stdout);
  co_await corio::sleep(std::chrono::duration<double>(seconds));
  server.close();
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 120;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--seconds S]\n", argv[0]);
      return 2;
    }
  }
  if (seconds <= 0) {
    std::fprintf(stderr, "w5: --seconds must be > 0\n");
    return 2;
  }
  corio::run(serve(seconds));
  return 0;
}
