// open_connection: its failures (refused, unreachable, timeout, bad options), trying each resolved address
// in turn, TCP_NODELAY, and the typed errors of the network layer.
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "corio/core/run.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/server.hpp"
#include "corio/net/socket.hpp"
#include "corio/net/stream.hpp"
#include "interpose.hpp"
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
      const std::string p = std::to_string(port);
      // The name as given, then the address tried: "localhost:P (127.0.0.1:P)" (or [::1]:P, the last tried).
      EXPECT_NE(what.find("localhost:" + p + " ("), std::string::npos) << what;
      EXPECT_TRUE(what.find("(127.0.0.1:" + p + ")") != std::string::npos ||
                  what.find("([::1]:" + p + ")") != std::string::npos)
          << what;
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
  bool hung = false;
  run_guarded([](std::uint16_t port, bool& hung) -> Task<> {
    auto first = co_await corio::open_connection("127.0.0.1", port);  // fills the queue
    auto pending = corio::create_task(corio::open_connection("127.0.0.1", port));
    co_await corio_test::turns(5);
    if (pending.done()) co_return;  // the kernel accepted it after all: nothing to cancel
    hung = true;
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
  }(full.port(), hung));
  if (!hung) GTEST_SKIP() << "the kernel accepted every connection to a full backlog; no pending connect";
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

// A Unix server whose accept backlog is full answers a non-blocking connect with EAGAIN, and the socket is
// left unconnected: no edge will ever say "connected". The connect fails at once, naming the path and the
// cause (a blocking connect would wait; libuv and tokio also fail), rather than handing back a stream whose
// first write fails with ENOTCONN (what a readiness check of SO_ERROR alone reports as connected).
TEST(Socket, UnixConnectToAFullBacklogFailsNamingTheCause) {
  std::string dir = std::filesystem::temp_directory_path() / "corio-net-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  std::string path = dir + "/full.sock";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  corio_test::Fd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 0), 0);  // never accepts
  std::vector<corio_test::Fd> fillers;
  for (;;) {  // fill the backlog (one connection with a backlog of 0 here)
    corio_test::Fd c(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
      ASSERT_EQ(errno, EAGAIN) << std::strerror(errno);
      break;
    }
    fillers.push_back(std::move(c));
    ASSERT_LT(fillers.size(), 64u);
  }
  run_guarded([](std::string path) -> Task<> {
    bool threw = false;
    try {
      (void)co_await corio::open_unix_connection(path);
    } catch (const corio::OSError& e) {
      threw = true;
      EXPECT_EQ(e.code(), EAGAIN);
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("backlog"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(threw);
  }(path));
  std::filesystem::remove_all(dir);
}

// The interposed ::connect (interpose.hpp) records each attempt; the io_uring backend connects with
// IORING_OP_CONNECT, without libc's ::connect, so it sees none there. (`backend`: the one the test's loop
// ran, whether chosen by CORIO_BACKEND or by Backend::automatic.)
bool connect_bypasses_libc(const corio_test::ConnectInterposer& connects, corio::Backend backend) {
  return connects.attempts().empty() && backend == corio::Backend::io_uring;
}

struct ConnectOutcome {
  bool os_error = false;          // threw corio::OSError
  bool connection_error = false;  // ... and a ConnectionError (refused, reset, ...) at that
  int code = 0;
  std::string what;
};

Task<ConnectOutcome> try_connect(std::string host, std::uint16_t port) {
  ConnectOutcome out;
  try {
    (void)co_await corio::open_connection(host, port);
  } catch (const corio::OSError& e) {
    out.os_error = true;
    out.connection_error = dynamic_cast<const corio::ConnectionError*>(&e) != nullptr;
    out.code = e.code();
    out.what = e.what();
  }
  co_return out;
}

// An unreachable host cannot be had on loopback, and these tests send nothing elsewhere: the interposed
// ::connect answers for 127.0.0.3 and 127.0.0.4 as the kernel does for a host or network it has no route
// to, at once, with EHOSTUNREACH / ENETUNREACH. (Were the interposition bypassed, the connects would go to
// those loopback addresses, where nothing listens: refused, and the test would fail.) Like Python's, the
// error is an OSError with the errno, not a ConnectionError, and names host:port.
TEST(Socket, UnreachableHostIsAnOSErrorNamingHostAndPort) {
  BoundNotListening closed_port;  // a port nothing listens on, should a connect get through
  const std::uint16_t port = closed_port.port();
  const std::string p = std::to_string(port);
  corio_test::ConnectInterposer connects;
  connects.fail("127.0.0.3", EHOSTUNREACH);
  connects.fail("127.0.0.4", ENETUNREACH);
  corio_test::FakeName name("no-route.corio-test.invalid", {"127.0.0.4"});
  ConnectOutcome by_address, by_name;
  corio::Backend backend{};
  run_guarded([](std::uint16_t port, ConnectOutcome& by_address, ConnectOutcome& by_name,
                 corio::Backend& backend) -> Task<> {
    backend = corio::get_running_loop().backend();
    by_address = co_await try_connect("127.0.0.3", port);
    by_name = co_await try_connect("no-route.corio-test.invalid", port);
  }(port, by_address, by_name, backend));
  if (connect_bypasses_libc(connects, backend))
    GTEST_SKIP() << "this backend connects without libc's ::connect, so the interposition cannot fail it";
  EXPECT_EQ(connects.attempts(), (std::vector<std::string>{"127.0.0.3:" + p, "127.0.0.4:" + p}));

  EXPECT_TRUE(by_address.os_error);
  EXPECT_FALSE(by_address.connection_error);
  EXPECT_EQ(by_address.code, EHOSTUNREACH);
  EXPECT_NE(by_address.what.find("connect to 127.0.0.3:" + p + ": " + std::strerror(EHOSTUNREACH)),
            std::string::npos)
      << by_address.what;

  EXPECT_TRUE(by_name.os_error);
  EXPECT_FALSE(by_name.connection_error);
  EXPECT_EQ(by_name.code, ENETUNREACH);
  EXPECT_NE(by_name.what.find("connect to no-route.corio-test.invalid:" + p + " (127.0.0.4:" + p +
                              "): " + std::strerror(ENETUNREACH)),
            std::string::npos)
      << by_name.what;
}

// A name resolving (through the interposed getaddrinfo) to [127.0.0.2, 127.0.0.1], and a server on
// 127.0.0.1 only: the connect to the first address is refused, open_connection goes on to the second.
// The epoll backend retries a connect when the socket polls writable. An unconnected socket polls writable
// too (with a hang-up), and its SO_ERROR is 0, as it is while a handshake is still going on: neither may
// pass for "connected". Here the interposed ::connect answers EINPROGRESS without connecting, so no
// connection ever comes; the connect must keep waiting (then time out), not hand back a dead stream.
TEST(Socket, AWritableSocketWithoutAConnectionIsNotTakenForConnected) {
  BoundNotListening closed_port;  // should a connect get through, it is refused: not a timeout either
  const std::uint16_t port = closed_port.port();
  corio_test::ConnectInterposer connects;
  connects.fail("127.0.0.5", EINPROGRESS);
  bool timed_out = false;
  std::string peer = "(none)";
  corio::Backend backend{};
  run_guarded([](std::uint16_t port, bool& timed_out, std::string& peer, corio::Backend& backend) -> Task<> {
    backend = corio::get_running_loop().backend();
    try {
      auto [r, w] = co_await corio::open_connection("127.0.0.5", port, {.timeout = 200ms});
      peer = w.peername();
    } catch (const corio::TimeoutError&) {
      timed_out = true;
    } catch (const corio::OSError& e) {
      peer = e.what();  // io_uring: the connect really went to 127.0.0.5 and was refused
    }
  }(port, timed_out, peer, backend));
  if (connect_bypasses_libc(connects, backend))
    GTEST_SKIP() << "this backend connects without libc's ::connect, so the interposition cannot hold it";
  EXPECT_TRUE(timed_out) << "connected to '" << peer << "'";
}

TEST(Socket, OpenConnectionTriesEachResolvedAddressInTurn) {
  corio_test::FakeName name("second-answers.corio-test.invalid", {"127.0.0.2", "127.0.0.1"});
  corio_test::ConnectInterposer connects;  // records only
  std::uint16_t port = 0;
  corio::Backend backend{};
  run_guarded([](std::uint16_t& port, corio::Backend& backend) -> Task<> {
    backend = corio::get_running_loop().backend();
    corio::Server server = co_await corio_test::start_echo_server();
    port = server.port();
    auto [r, w] = co_await corio::open_connection("second-answers.corio-test.invalid", port);
    EXPECT_EQ(w.peername(), "127.0.0.1:" + std::to_string(port));
    w.write("second address\n");
    EXPECT_EQ(co_await r.readline(), "second address\n");
  }(port, backend));
  if (connect_bypasses_libc(connects, backend))
    GTEST_SKIP() << "this backend connects without libc's ::connect: the attempts cannot be seen";
  const std::string p = std::to_string(port);
  EXPECT_EQ(connects.attempts(), (std::vector<std::string>{"127.0.0.2:" + p, "127.0.0.1:" + p}));
}

// TCP_NODELAY is on by default on open_connection's socket (found by its addresses: streams do not show
// their descriptors).
TEST(Socket, OpenConnectionTurnsTcpNodelayOn) {
  run_guarded([]() -> Task<> {
    corio_test::RawPeerConnection c = co_await corio_test::connect_to_raw_peer();
    const std::string server = "127.0.0.1:" + std::to_string(c.listener.port());
    const std::string client = corio::detail::peer_name(c.peer.get());
    CO_ASSERT(c.writer.peername() == server);
    const int fd = corio_test::find_socket_fd(client, server);
    CO_ASSERT(fd >= 0);
    EXPECT_EQ(corio_test::tcp_nodelay(fd), 1);
    // The kernel's default is off (the raw peer shows it): the 1 above is open_connection's doing.
    EXPECT_EQ(corio_test::tcp_nodelay(c.peer.get()), 0);
  }());
}

}  // namespace

// A host whose only IPv6 address is ::1 (IPv4-only containers): glibc's AI_ADDRCONFIG, which ignores
// loopback addresses, made corio refuse even the numeric "::1" ("Address family for hostname not
// supported"), where asyncio (no AI_ADDRCONFIG) serves and connects. Reproduced in a user and network
// namespace of a child process, with nothing but lo up.
namespace {
Task<> ipv6_loopback_round_trip() {
  std::vector<corio::AddrInfo> ai = co_await corio::getaddrinfo("::1", "80");
  if (ai.empty()) throw std::runtime_error("no address for ::1");
  corio::Server server = co_await corio::start_server(
      [](corio::StreamReader, corio::StreamWriter w) -> Task<> {
        w.write("hi\n");
        co_await w.drain();
      },
      "::1", 0);
  auto [r, w] = co_await corio::open_connection("::1", server.port());
  if (co_await r.readline() != "hi\n") throw std::runtime_error("wrong reply");
}
}  // namespace

TEST(Socket, Ipv6LoopbackLiteralWorksOnAHostWhoseOnlyIpv6AddressIsLoopback) {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) ::_exit(77);  // no unprivileged namespaces here
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq lo{};
    std::strcpy(lo.ifr_name, "lo");
    if (fd < 0 || ::ioctl(fd, SIOCGIFFLAGS, &lo) != 0) ::_exit(78);
    lo.ifr_flags = static_cast<short>(lo.ifr_flags | IFF_UP);
    if (::ioctl(fd, SIOCSIFFLAGS, &lo) != 0) ::_exit(78);
    // One IPv4 address besides loopback (as a container's eth0): else glibc's AI_ADDRCONFIG filters
    // nothing, having seen no address of either family.
    ifreq alias{};
    std::strcpy(alias.ifr_name, "lo:1");
    auto* in = reinterpret_cast<sockaddr_in*>(&alias.ifr_addr);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(0x0a090901);  // 10.9.9.1, on lo: nothing leaves the namespace
    if (::ioctl(fd, SIOCSIFADDR, &alias) != 0) ::_exit(78);
    ::close(fd);
    if (!corio_test::ipv6_loopback_available()) ::_exit(79);
    try {
      corio::run(ipv6_loopback_round_trip());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "in the namespace: %s\n", e.what());
      ::_exit(1);
    }
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) >= 77)
    GTEST_SKIP() << "no user/network namespace or no IPv6 here (" << WEXITSTATUS(status) << ")";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}
