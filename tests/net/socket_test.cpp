// open_connection's failures (refused, timeout, bad options) and the typed errors of the network layer.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "corio/core/task_handle.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/server.hpp"
#include "corio/net/socket.hpp"
#include "corio/net/stream.hpp"
#include "net_test_util.hpp"

using namespace std::chrono_literals;
using corio::Task;
using corio_test::run_guarded;

namespace {

// A TCP socket bound to 127.0.0.1 on an ephemeral port but not listening: it holds the port (nobody else
// can take it meanwhile) and the kernel answers connections to it with RST.
class BoundNotListening {
 public:
  BoundNotListening() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a = corio_test::loopback4(0);
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) throw std::runtime_error("bind");
    port_ = corio_test::port_of(fd_.get());
  }
  std::uint16_t port() const { return port_; }

 private:
  corio_test::Fd fd_;
  std::uint16_t port_ = 0;
};

TEST(Socket, ConnectionRefusedNamesHostAndPort) {
  BoundNotListening closed_port;
  run_guarded([](std::uint16_t port) -> Task<> {
    bool threw = false;
    try {
      (void)co_await corio::open_connection("127.0.0.1", port);
    } catch (const corio::ConnectionRefusedError& e) {
      threw = true;
      std::string what = e.what();
      EXPECT_NE(what.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << what;
      EXPECT_EQ(e.code(), ECONNREFUSED);
    }
    EXPECT_TRUE(threw);
  }(closed_port.port()));
}

TEST(Socket, ConnectionRefusedByNameNamesTheHostAndTheAddress) {
  BoundNotListening closed_port;
  run_guarded([](std::uint16_t port) -> Task<> {
    bool threw = false;
    try {
      (void)co_await corio::open_connection("localhost", port);
    } catch (const corio::ConnectionRefusedError& e) {
      threw = true;
      std::string what = e.what();
      EXPECT_NE(what.find("localhost:" + std::to_string(port)), std::string::npos) << what;
    }
    EXPECT_TRUE(threw);
  }(closed_port.port()));
}

TEST(Socket, ConnectionErrorsAreAlsoOSErrors) {
  BoundNotListening closed_port;
  run_guarded([](std::uint16_t port) -> Task<> {
    bool threw = false;
    try {
      (void)co_await corio::open_connection("127.0.0.1", port);
    } catch (const corio::OSError& e) {  // the base class catches it too
      threw = true;
      EXPECT_NE(dynamic_cast<const corio::ConnectionError*>(&e), nullptr);
    }
    EXPECT_TRUE(threw);
  }(closed_port.port()));
}

// A listener with backlog 0 that never accepts: one connection fills its queue; the kernel then drops
// further SYNs, so the next connect stays pending — a loopback way to make a connect hang.
TEST(Socket, OpenConnectionTimeout) {
  corio_test::RawListener full(0);
  bool hung = false;
  run_guarded([](std::uint16_t port, bool& hung) -> Task<> {
    std::vector<std::pair<corio::StreamReader, corio::StreamWriter>> fillers;
    for (int i = 0; i < 8 && !hung; ++i) {
      try {
        fillers.push_back(co_await corio::open_connection("127.0.0.1", port, {.timeout = 300ms}));
      } catch (const corio::TimeoutError& e) {
        hung = true;
        std::string what = e.what();
        EXPECT_NE(what.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << what;
        EXPECT_NE(what.find("timed out"), std::string::npos) << what;
      }
    }
    // A timeout that does not expire changes nothing.
    corio::Server server = co_await corio_test::start_echo_server();
    auto [r, w] = co_await corio::open_connection("127.0.0.1", server.port(), {.timeout = 10s});
    w.write("in time\n");
    EXPECT_EQ(co_await r.readline(), "in time\n");
  }(full.port(), hung));
  if (!hung) GTEST_SKIP() << "the kernel accepted every connection to a full backlog; no hanging connect";
}

TEST(Socket, CancellingAPendingConnectLeavesNothingBehind) {
  corio_test::RawListener full(0);
  run_guarded([](std::uint16_t port) -> Task<> {
    auto first = co_await corio::open_connection("127.0.0.1", port);  // fills the queue
    auto pending = corio::create_task(corio::open_connection("127.0.0.1", port));
    co_await corio_test::turns(5);
    if (pending.done()) co_return;  // the kernel accepted it after all: nothing to cancel
    EXPECT_NE(pending.awaiting().find("connect"), std::string::npos) << pending.awaiting();
    // The pending connect holds one socket; once cancelled, it must be closed.
    const int fds_while_pending = corio_test::open_fd_count();
    pending.cancel();
    bool cancelled = false;
    try {
      (void)co_await std::move(pending);
    } catch (const corio::CancelledError&) {
      cancelled = true;
    }
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(corio_test::open_fd_count(), fds_while_pending - 1) << "the cancelled connect's socket leaked";
  }(full.port()));
}

TEST(Socket, TlsIsRefusedUntilTheTlsLayerExists) {
  run_guarded([]() -> Task<> {
    bool threw = false;
    try {
      (void)co_await corio::open_connection("127.0.0.1", 1, {.tls = true});
    } catch (const corio::Error& e) {
      threw = true;
      EXPECT_NE(std::string(e.what()).find("TLS"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(threw);
  }());
}

TEST(Socket, ErrnoMapsToTheTypedErrors) {
  auto kind = [](int err) -> std::string {
    try {
      corio::detail::throw_os_error(err, "op on 127.0.0.1:9");
    } catch (const corio::ConnectionRefusedError&) {
      return "refused";
    } catch (const corio::ConnectionResetError&) {
      return "reset";
    } catch (const corio::ConnectionAbortedError&) {
      return "aborted";
    } catch (const corio::BrokenPipeError&) {
      return "pipe";
    } catch (const corio::TimeoutError&) {
      return "timeout";
    } catch (const corio::OSError& e) {
      EXPECT_EQ(e.code(), err);
      EXPECT_NE(std::string(e.what()).find("op on 127.0.0.1:9: "), std::string::npos) << e.what();
      return "os";
    }
    return "none";
  };
  EXPECT_EQ(kind(ECONNREFUSED), "refused");
  EXPECT_EQ(kind(ECONNRESET), "reset");
  EXPECT_EQ(kind(ECONNABORTED), "aborted");
  EXPECT_EQ(kind(EPIPE), "pipe");
  EXPECT_EQ(kind(ETIMEDOUT), "timeout");
  EXPECT_EQ(kind(EHOSTUNREACH), "os");
  EXPECT_EQ(kind(EADDRINUSE), "os");
}

TEST(Socket, UnixConnectToAMissingPathFails) {
  run_guarded([]() -> Task<> {
    bool threw = false;
    std::string path = "/nonexistent-corio-dir/none.sock";
    try {
      (void)co_await corio::open_unix_connection(path);
    } catch (const corio::OSError& e) {
      threw = true;
      EXPECT_EQ(e.code(), ENOENT);
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    EXPECT_TRUE(threw);
    threw = false;
    try {
      (void)co_await corio::open_unix_connection(std::string(200, 'x'));
    } catch (const corio::OSError& e) {
      threw = true;
      EXPECT_EQ(e.code(), ENAMETOOLONG);
    }
    EXPECT_TRUE(threw);
  }());
}

// "Unreachable" (EHOSTUNREACH / ENETUNREACH) cannot be produced on loopback; the only way would be sending
// to a non-loopback address, which these tests never do.
TEST(Socket, UnreachableHost) {
  GTEST_SKIP() << "an unreachable host cannot be produced on loopback, and tests send nothing elsewhere";
}

}  // namespace
