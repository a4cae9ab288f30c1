// UDP: open_datagram and DatagramSocket over loopback — ephemeral ports, send_to/recv_from with the
// sender's address, connected UDP, datagram boundaries and truncation, suspension and cancellation of a
// pending receive (no datagram lost), IPv6, and the errors (GaiError, RuntimeError on a closed socket,
// OSError for an address in use, ConnectionRefusedError from an ICMP port unreachable).
//
// Only 127.0.0.1 and ::1; ordering through events and loop turns, never sleeps or wall-clock checks.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "corio/core/async_generator.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/wait_for.hpp"
#include "corio/net/dns.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/udp.hpp"
#include "corio/sync/event.hpp"
#include "interpose.hpp"
#include "net_test_util.hpp"

using namespace std::chrono_literals;
using corio::AddrInfo;
using corio::DatagramSocket;
using corio::Task;
using corio_test::run_guarded;

namespace {

// A plain blocking UDP socket bound to 127.0.0.1, ephemeral port: an outside sender.
corio_test::Fd raw_udp4() {
  corio_test::Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a = corio_test::loopback4(0);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
    throw std::runtime_error(std::string("bind: ") + std::strerror(errno));
  return fd;
}

void raw_sendto4(int fd, std::string_view data, std::uint16_t port) {
  sockaddr_in to = corio_test::loopback4(port);
  ssize_t n = ::sendto(fd, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  if (n != static_cast<ssize_t>(data.size()))
    throw std::runtime_error(std::string("sendto: ") + std::strerror(errno));
}

// A loopback UDP port with nothing bound to it (bound, read, released).
std::uint16_t unused_udp_port() {
  corio_test::Fd fd = raw_udp4();
  return corio_test::port_of(fd.get());
}

TEST(Udp, OpenDatagramGivesAnEphemeralPort) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    EXPECT_FALSE(a.is_closed());
    EXPECT_GE(a.native_handle(), 0);
    EXPECT_NE(a.local_port(), 0);
    EXPECT_NE(b.local_port(), 0);
    EXPECT_NE(a.local_port(), b.local_port());
    EXPECT_EQ(a.local_address(), "127.0.0.1:" + std::to_string(a.local_port()));
    // The port really is the socket's: the kernel agrees.
    EXPECT_EQ(corio_test::port_of(a.native_handle()), a.local_port());
  }());
}

TEST(Udp, SendToRecvFromRoundTripReportsTheSender) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);

    co_await a.send_to("ping", "127.0.0.1", b.local_port());
    auto [data, from] = co_await b.recv_from();
    EXPECT_EQ(data, "ping");
    EXPECT_EQ(from.family, AF_INET);
    EXPECT_EQ(from.socktype, SOCK_DGRAM);
    EXPECT_EQ(from.port(), a.local_port());
    EXPECT_EQ(from.host(), "127.0.0.1");
    EXPECT_EQ(from.to_string(), "127.0.0.1:" + std::to_string(a.local_port()));

    // Reply to the reported address: it reaches a.
    co_await b.send_to("pong", from.host(), from.port());
    auto [reply, reply_from] = co_await a.recv_from();
    EXPECT_EQ(reply, "pong");
    EXPECT_EQ(reply_from.to_string(), "127.0.0.1:" + std::to_string(b.local_port()));
  }());
}

TEST(Udp, SendToAResolvedName) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    // "localhost" may resolve to ::1 first: an address of the wrong family is skipped for the next one.
    co_await a.send_to("by name", "localhost", b.local_port());
    auto [data, from] = co_await b.recv_from();
    EXPECT_EQ(data, "by name");
    EXPECT_EQ(from.port(), a.local_port());
  }());
}

TEST(Udp, ConnectedSendAndRecvBothWays) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    co_await a.connect("127.0.0.1", b.local_port());
    co_await b.connect("127.0.0.1", a.local_port());

    co_await a.send("a to b");
    EXPECT_EQ(co_await b.recv(), "a to b");
    co_await b.send("b to a");
    EXPECT_EQ(co_await a.recv(), "b to a");

    // recv_from on a connected socket still names the peer.
    co_await a.send("again");
    auto [data, from] = co_await b.recv_from();
    EXPECT_EQ(data, "again");
    EXPECT_EQ(from.to_string(), "127.0.0.1:" + std::to_string(a.local_port()));
  }());
}

TEST(Udp, ConnectedSocketOnlyHearsItsPeer) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket stranger = co_await corio::open_datagram("127.0.0.1", 0);
    co_await a.connect("127.0.0.1", b.local_port());
    co_await stranger.send_to("not for you", "127.0.0.1", a.local_port());
    co_await b.send_to("from the peer", "127.0.0.1", a.local_port());
    EXPECT_EQ(co_await a.recv(), "from the peer");
  }());
}

// As asyncio's connected datagram transport ("Invalid address: must be None or <peer>"): send_to on a
// connected socket may name only its peer (Linux would send elsewhere), and a refused one sends nothing.
TEST(Udp, ConnectedSocketSendsToOnlyItsPeer) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket other = co_await corio::open_datagram("127.0.0.1", 0);
    co_await a.connect("127.0.0.1", b.local_port());
    bool refused = false;
    try {
      co_await a.send_to("astray", "127.0.0.1", other.local_port());
    } catch (const std::invalid_argument& e) {
      refused = true;
      EXPECT_NE(std::string(e.what()).find("connected to 127.0.0.1:" + std::to_string(b.local_port())),
                std::string::npos)
          << e.what();
    }
    EXPECT_TRUE(refused);
    // Naming the peer is fine, by number or by name.
    co_await a.send_to("to the peer", "127.0.0.1", b.local_port());
    co_await a.send_to("by name", "localhost", b.local_port());
    EXPECT_EQ(co_await b.recv(), "to the peer");
    EXPECT_EQ(co_await b.recv(), "by name");
    // Nothing reached the other socket: a datagram sent after the refused one is the first it gets.
    co_await b.send_to("marker", "127.0.0.1", other.local_port());
    auto [got, from] = co_await other.recv_from();
    EXPECT_EQ(got, "marker");
  }());
}

TEST(Udp, DatagramBoundariesAreKept) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    const std::vector<std::string> sent = {std::string(1, 'a'), std::string(1500, 'b'),
                                           std::string(40000, 'c')};
    for (const std::string& d : sent) co_await a.send_to(d, "127.0.0.1", b.local_port());
    for (const std::string& d : sent) {
      auto [got, from] = co_await b.recv_from();
      EXPECT_EQ(got.size(), d.size());
      EXPECT_EQ(got, d);
      EXPECT_EQ(from.port(), a.local_port());
    }
    // Connected: the same.
    co_await a.connect("127.0.0.1", b.local_port());
    for (const std::string& d : sent) co_await a.send(d);
    for (const std::string& d : sent) EXPECT_EQ(co_await b.recv(), d);
  }());
}

TEST(Udp, EmptyDatagramIsADatagram) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    co_await a.send_to("", "127.0.0.1", b.local_port());
    co_await a.send_to("after", "127.0.0.1", b.local_port());
    auto [empty, from] = co_await b.recv_from();
    EXPECT_EQ(empty, "");
    EXPECT_EQ(from.port(), a.local_port());
    auto [after, from2] = co_await b.recv_from();
    EXPECT_EQ(after, "after");
  }());
}

TEST(Udp, LongDatagramIsTruncatedToMaxSize) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    std::string big;
    for (int i = 0; i < 100; ++i) big += static_cast<char>('A' + i % 26);
    co_await a.send_to(big, "127.0.0.1", b.local_port());
    co_await a.send_to("next", "127.0.0.1", b.local_port());
    auto [cut, from] = co_await b.recv_from(10);
    EXPECT_EQ(cut, big.substr(0, 10));
    EXPECT_EQ(from.port(), a.local_port());
    // The rest of the long datagram is gone: the next receive gets the next datagram whole.
    auto [next, from2] = co_await b.recv_from(10);
    EXPECT_EQ(next, "next");

    // Connected recv truncates the same way.
    co_await a.connect("127.0.0.1", b.local_port());
    co_await a.send(big);
    co_await a.send("tail");
    EXPECT_EQ(co_await b.recv(7), big.substr(0, 7));
    EXPECT_EQ(co_await b.recv(7), "tail");
  }());
}

TEST(Udp, RecvFromSuspendsUntilADatagramArrivesWhileOthersRun) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);

    auto receiver = corio::create_task([](DatagramSocket& s) -> Task<std::pair<std::string, AddrInfo>> {
      co_return co_await s.recv_from();
    }(b));

    // Another task keeps running while the receive waits.
    int ticks = 0;
    corio::Event ticked;
    auto ticker = corio::create_task([](int& n, corio::Event& done) -> Task<> {
      for (n = 0; n < 20; ++n) co_await corio::sleep(0s);
      done.set();
    }(ticks, ticked));

    co_await ticked.wait();
    EXPECT_EQ(ticks, 20);
    EXPECT_FALSE(receiver.done());
    // Suspended on the socket itself (waiting for it to become readable), not on anything else.
    const std::string on_fd = "on fd " + std::to_string(b.native_handle());
    EXPECT_NE(receiver.awaiting().find(on_fd), std::string::npos) << receiver.awaiting();
    co_await std::move(ticker);

    co_await a.send_to("wake up", "127.0.0.1", b.local_port());
    auto [data, from] = co_await std::move(receiver);
    EXPECT_EQ(data, "wake up");
    EXPECT_EQ(from.port(), a.local_port());
  }());
}

TEST(Udp, CancelledRecvFromLosesNoLaterDatagram) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);

    // Nothing is sent: the receive can only end by the timeout.
    CO_EXPECT_THROW_AS(co_await corio::wait_for(b.recv_from(), 20ms), corio::TimeoutError, e, (void)e);
    CO_EXPECT_THROW_AS(co_await corio::wait_for(b.recv(), 20ms), corio::TimeoutError, e, (void)e);

    co_await a.send_to("first after cancel", "127.0.0.1", b.local_port());
    co_await a.send_to("second", "127.0.0.1", b.local_port());
    auto [first, from] = co_await b.recv_from();
    EXPECT_EQ(first, "first after cancel");
    EXPECT_EQ(from.port(), a.local_port());
    auto [second, from2] = co_await b.recv_from();
    EXPECT_EQ(second, "second");
  }());
}

TEST(Udp, CancelledRecvFromLosesNoLaterDatagramWhenSentWhileWaiting) {
  // A pending receive is cancelled directly (no timer), then a datagram arrives.
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    auto pending = corio::create_task([](DatagramSocket& s) -> Task<std::pair<std::string, AddrInfo>> {
      co_return co_await s.recv_from();
    }(b));
    co_await corio_test::turns(3);
    CO_ASSERT(!pending.done());
    pending.cancel();
    CO_EXPECT_THROW_AS(co_await std::move(pending), corio::CancelledError, e, (void)e);

    co_await a.send_to("kept", "127.0.0.1", b.local_port());
    auto [data, from] = co_await b.recv_from();
    EXPECT_EQ(data, "kept");
  }());
}

TEST(Udp, CancellationRacingACompletedReceiveLosesNoDatagram) {
  // The datagram for `x` arrives on the same loop turn as one for `y`; y's receiver, woken first, cancels
  // x's receiver after its receive completed but before it ran. The datagram must be either returned by
  // that receive or still there for the next one.
  run_guarded([]() -> Task<> {
    DatagramSocket x = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket y = co_await corio::open_datagram("127.0.0.1", 0);
    corio_test::Fd sender = raw_udp4();

    auto on_x = corio::create_task([](DatagramSocket& s) -> Task<std::pair<std::string, AddrInfo>> {
      co_return co_await s.recv_from();
    }(x));
    auto on_y = corio::create_task(
        [](DatagramSocket& s, corio::TaskHandle<std::pair<std::string, AddrInfo>>& victim) -> Task<> {
          auto [d, f] = co_await s.recv_from();
          EXPECT_EQ(d, "to y");
          victim.cancel();
        }(y, on_x));
    co_await corio_test::turns(3);
    CO_ASSERT(!on_x.done());
    CO_ASSERT(!on_y.done());

    // Both arrive before the loop polls again: y's first.
    raw_sendto4(sender.get(), "to y", y.local_port());
    raw_sendto4(sender.get(), "to x", x.local_port());
    co_await std::move(on_y);

    std::string got;
    try {
      got = (co_await std::move(on_x)).first;
    } catch (const corio::CancelledError&) {
    }
    if (got.empty()) {
      // Cancelled: the datagram is still to be received, ahead of a later one.
      raw_sendto4(sender.get(), "later", x.local_port());
      auto [d, f] = co_await x.recv_from();
      got = d;
    }
    EXPECT_EQ(got, "to x");
  }());
}

TEST(Udp, Ipv6Loopback) {
  if (!corio_test::ipv6_loopback_available()) GTEST_SKIP() << "::1 is not available (IPv6 disabled?)";
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("::1", 0);
    DatagramSocket b = co_await corio::open_datagram("::1", 0);
    EXPECT_NE(a.local_port(), 0);
    EXPECT_EQ(a.local_address(), "[::1]:" + std::to_string(a.local_port()));

    co_await a.send_to("six", "::1", b.local_port());
    auto [data, from] = co_await b.recv_from();
    EXPECT_EQ(data, "six");
    EXPECT_EQ(from.family, AF_INET6);
    EXPECT_EQ(from.port(), a.local_port());
    EXPECT_EQ(from.host(), "::1");
    EXPECT_EQ(from.to_string(), "[::1]:" + std::to_string(a.local_port()));

    co_await b.connect("::1", a.local_port());
    co_await b.send("back");
    EXPECT_EQ(co_await a.recv(), "back");
  }());
}

TEST(Udp, UnresolvableNameIsAGaiErrorNamingTheHost) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    CO_EXPECT_THROW_AS(co_await a.send_to("x", "no-such-host.invalid", 9), corio::GaiError, e,
                       EXPECT_NE(std::string(e.what()).find("no-such-host.invalid"), std::string::npos)
                           << e.what());
    CO_EXPECT_THROW_AS(co_await a.connect("other-host.invalid", 9), corio::GaiError, e,
                       EXPECT_NE(std::string(e.what()).find("other-host.invalid"), std::string::npos)
                           << e.what());
    CO_EXPECT_THROW_AS(co_await corio::open_datagram("bind-host.invalid", 0), corio::GaiError, e,
                       EXPECT_NE(std::string(e.what()).find("bind-host.invalid"), std::string::npos)
                           << e.what());
    // The socket still works afterwards.
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    co_await a.send_to("still fine", "127.0.0.1", b.local_port());
    auto [data, from] = co_await b.recv_from();
    EXPECT_EQ(data, "still fine");
  }());
}

TEST(Udp, ClosedSocketThrowsRuntimeError) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    std::uint16_t port = a.local_port();
    a.close();
    EXPECT_TRUE(a.is_closed());
    EXPECT_LT(a.native_handle(), 0);
    a.close();  // twice: harmless
    CO_EXPECT_THROW_AS(co_await a.send_to("x", "127.0.0.1", port), corio::RuntimeError, e, (void)e);
    CO_EXPECT_THROW_AS(co_await a.recv_from(), corio::RuntimeError, e, (void)e);
    CO_EXPECT_THROW_AS(co_await a.connect("127.0.0.1", port), corio::RuntimeError, e, (void)e);
    CO_EXPECT_THROW_AS(co_await a.send("x"), corio::RuntimeError, e, (void)e);
    CO_EXPECT_THROW_AS(co_await a.recv(), corio::RuntimeError, e, (void)e);

    // A default-constructed and a moved-from socket are closed too.
    DatagramSocket none;
    EXPECT_TRUE(none.is_closed());
    CO_EXPECT_THROW_AS(co_await none.recv_from(), corio::RuntimeError, e, (void)e);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket c = std::move(b);
    EXPECT_TRUE(b.is_closed());  // NOLINT(bugprone-use-after-move): the moved-from state is the point
    EXPECT_FALSE(c.is_closed());
    CO_EXPECT_THROW_AS(co_await b.send("x"), corio::RuntimeError, e, (void)e);
  }());
}

TEST(Udp, CloseWhileReceivingEndsTheReceive) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    auto pending = corio::create_task([](DatagramSocket& s) -> Task<std::pair<std::string, AddrInfo>> {
      co_return co_await s.recv_from();
    }(a));
    co_await corio_test::turns(3);
    CO_ASSERT(!pending.done());
    a.close();
    // The pending receive ends with an OSError (the task itself was not cancelled) rather than hanging on
    // a closed descriptor.
    CO_EXPECT_THROW_AS(co_await std::move(pending), corio::OSError, e,
                       EXPECT_EQ(e.code(), ECANCELED) << e.what());
  }());
}

TEST(Udp, BindingAnAddressInUseIsAnOSErrorNamingTheAddress) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    std::uint16_t port = a.local_port();
    CO_EXPECT_THROW_AS(co_await corio::open_datagram("127.0.0.1", port), corio::OSError, e, {
      EXPECT_EQ(e.code(), EADDRINUSE);
      EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos)
          << e.what();
    });
  }());
}

TEST(Udp, ConnectedSocketReportsPortUnreachableAsConnectionRefused) {
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    std::uint16_t port = unused_udp_port();
    co_await a.connect("127.0.0.1", port);
    // Loopback answers with ICMP port unreachable; Linux reports it on the connected socket's next call.
    co_await a.send("anyone?");
    CO_EXPECT_THROW_AS(co_await a.recv(), corio::ConnectionRefusedError, e, {
      EXPECT_EQ(e.code(), ECONNREFUSED);
      EXPECT_NE(std::string(e.what()).find(std::to_string(port)), std::string::npos) << e.what();
    });
    // The error is reported once: the socket is usable afterwards, with another peer.
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    co_await a.connect("127.0.0.1", b.local_port());
    co_await b.send_to("hello", "127.0.0.1", a.local_port());
    EXPECT_EQ(co_await a.recv(), "hello");
  }());
}

TEST(Udp, PendingRecvSeesPortUnreachable) {
  // The error arrives while a receive is already waiting: it wakes the receive.
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    co_await a.connect("127.0.0.1", unused_udp_port());
    auto pending =
        corio::create_task([](DatagramSocket& s) -> Task<std::string> { co_return co_await s.recv(); }(a));
    co_await corio_test::turns(3);
    CO_ASSERT(!pending.done());
    co_await a.send("anyone?");
    CO_EXPECT_THROW_AS(co_await std::move(pending), corio::ConnectionRefusedError, e, (void)e);
  }());
}

// A send still waiting to be submitted (io_uring prepares requests during a turn and submits them when the
// loop polls) when the socket is closed in the same turn, and its number taken at once by another socket:
// the datagram goes to the first socket's peer or nowhere, never out of the socket now holding the number.
TEST(Udp, SendPendingWhenItsSocketClosesNeverLeavesFromTheNumbersNextOwner) {
  run_guarded([]() -> Task<> {
    corio_test::Fd intended = raw_udp4();
    corio_test::Fd unrelated = raw_udp4();
    auto s = co_await corio::open_datagram("127.0.0.1", 0);
    co_await s.connect("127.0.0.1", corio_test::port_of(intended.get()));
    const int number = s.native_handle();
    auto sender = corio::create_task(s.send("stale?"));
    // Runs right after the sender's first step, in the same turn: before the loop polls.
    auto close_and_reuse = [](DatagramSocket& sock, int num, int to_port) -> Task<> {
      sock.close();
      corio_test::Fd other(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      sockaddr_in to = corio_test::loopback4(static_cast<std::uint16_t>(to_port));
      CO_ASSERT(::connect(other.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
      if (other.get() == num)  // (the lowest free number usually is the one just closed)
        (void)other.release();
      else
        CO_ASSERT(::dup2(other.get(), num) == num);  // the closed socket's number, now another socket's
      co_return;
    };
    auto closer = corio::create_task(close_and_reuse(s, number, corio_test::port_of(unrelated.get())));
    co_await closer;
    bool sent = true;
    try {
      co_await sender;
    } catch (const std::exception&) {
      sent = false;  // cancelled or failed by the close: then it must not arrive anywhere
    }
    co_await corio_test::turns(5);
    char buf[64];
    EXPECT_EQ(::recv(unrelated.get(), buf, sizeof buf, MSG_DONTWAIT), -1)
        << "the datagram left through the socket that reused the closed one's number";
    if (sent) {
      EXPECT_EQ(::recv(intended.get(), buf, sizeof buf, MSG_DONTWAIT), 6);
    }
    ::close(number);
  }());
}

}  // namespace

// A datagram socket made in one run and used (watched) in another, then closed there: the loop that watched
// it forgets the number too, so the next socket given it is watched afresh. (The epoll backend used to keep
// its entry "registered" and the new socket's recv_from waited forever.)
TEST(Udp, SocketUsedInALaterRunAndClosedThereLeavesNothingBehindForItsNumber) {
  DatagramSocket s =
      corio::run([]() -> Task<DatagramSocket> { co_return co_await corio::open_datagram("127.0.0.1", 0); }());
  run_guarded([](DatagramSocket& s) -> Task<> {
    auto first = corio::create_task(s.recv_from());
    co_await corio_test::turns(3);  // the backend of this loop watches s
    first.cancel();
    try {
      (void)co_await first;
    } catch (const corio::CancelledError&) {
    }
    const int old = s.native_handle();
    s.close();
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    EXPECT_EQ(a.native_handle(), old);  // the number came back: the case under test
    auto rx = corio::create_task(a.recv_from());
    co_await corio_test::turns(3);  // waits, watched
    co_await b.send_to("hello", "127.0.0.1", a.local_port());
    auto [data, from] = co_await corio::wait_for(std::move(rx), 10s);
    EXPECT_EQ(data, "hello");
  }(s));
}

// A generator that outlives its loop, whose consumer task was waiting inside it at a receive when the loop
// closed: the receive is dropped with the loop, and nothing reaches the destroyed task afterwards (the
// backends used to complete the op into it as they closed: a use-after-free ASan saw on both).
TEST(Udp, GeneratorLeftWaitingAtAReceiveWhenItsLoopClosesLetsGo) {
  auto sock = std::make_unique<DatagramSocket>();
  std::unique_ptr<corio::AsyncGenerator<std::string>> gen;
  auto datagrams = [](DatagramSocket& s) -> corio::AsyncGenerator<std::string> {
    for (;;) co_yield co_await s.recv(100);
  };
  {
    corio::EventLoop loop;
    loop.run_until_complete([](auto& sock, auto& gen, auto& datagrams) -> Task<> {
      *sock = co_await corio::open_datagram("127.0.0.1", 0);
      gen = std::make_unique<corio::AsyncGenerator<std::string>>(datagrams(*sock));
      corio::create_task(
          [](corio::AsyncGenerator<std::string>& g) -> Task<> { (void)co_await g.next(); }(*gen));
      co_await corio_test::turns(3);  // the consumer now waits inside the generator, at the receive
    }(sock, gen, datagrams));
  }
  gen.reset();
  sock.reset();
}

// A datagram socket made in one loop, used in a second and closed between two runs of that second loop:
// the second loop's backend, which watched it, forgets its number, so the next socket given that number is
// watched afresh. (The socket told only the loop that made it, gone by then: on epoll the second loop kept
// the number "registered" and the new socket's receive waited for ever.)
TEST(Udp, SocketUsedInAnotherLoopAndClosedBetweenItsRunsLeavesNothingBehind) {
  DatagramSocket s =
      corio::run([]() -> Task<DatagramSocket> { co_return co_await corio::open_datagram("127.0.0.1", 0); }());
  corio::EventLoop b;
  b.run_until_complete([](DatagramSocket& s) -> Task<> {
    auto rx = corio::create_task(s.recv_from());
    co_await corio_test::turns(3);  // this loop's backend watches s
    rx.cancel();
    try {
      (void)co_await rx;
    } catch (const corio::CancelledError&) {
    }
  }(s));
  const int old = s.native_handle();
  std::vector<int> fillers;  // take every free number below old, so that the next socket gets old
  for (int d; (d = ::dup(2)) >= 0;) {
    if (d > old) {
      ::close(d);
      break;
    }
    fillers.push_back(d);
  }
  s.close();  // between two runs of b
  b.run_until_complete(corio::wait_for(
      [](int old) -> Task<> {
        DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
        DatagramSocket tx = co_await corio::open_datagram("127.0.0.1", 0);
        EXPECT_EQ(a.native_handle(), old);  // the number came back: the case under test
        auto rx = corio::create_task(a.recv_from());
        co_await corio_test::turns(3);  // waits, watched
        co_await tx.send_to("hello", "127.0.0.1", a.local_port());
        auto [data, from] = co_await std::move(rx);
        EXPECT_EQ(data, "hello");
      }(old),
      10s));
  for (int d : fillers) ::close(d);
}

// close() with a receive waiting lets go of the port at once, on either backend: it can be bound again in
// the same turn (on io_uring the receive in flight held the socket until the next submission).
TEST(Udp, CloseWithAReceiveWaitingFreesThePortAtOnce) {
  run_guarded([]() -> Task<> {
    DatagramSocket u = co_await corio::open_datagram("127.0.0.1", 0);
    const std::uint16_t port = u.local_port();
    auto receiving = corio::create_task([](DatagramSocket& u) -> Task<bool> {
      try {
        (void)co_await u.recv_from();
      } catch (const corio::OSError&) {
        co_return true;
      }
      co_return false;
    }(u));
    co_await corio::sleep(0s);  // the receive waits on the socket
    co_await corio::sleep(0s);
    u.close();
    DatagramSocket again = co_await corio::open_datagram("127.0.0.1", port);  // (threw EADDRINUSE)
    EXPECT_EQ(again.local_port(), port);
    EXPECT_TRUE(co_await receiving);
  }());
}

// An operation holds the socket's state, not the DatagramSocket: closed by another task while send_to or
// connect resolved a name, it fails with RuntimeError instead of going on with descriptor -1 (on io_uring
// that indexed the backend's table at -1); destroyed while a receive waits, the receive ends with an error
// (it read the destroyed object: ASan saw a use after free).
TEST(Udp, ClosingWhileResolvingANameIsARuntimeError) {
  run_guarded([]() -> Task<> {
    DatagramSocket peer = co_await corio::open_datagram("127.0.0.1", 0);
    DatagramSocket s = co_await corio::open_datagram("127.0.0.1", 0);
    auto sending = corio::create_task(s.send_to("hi", "localhost", peer.local_port()));
    co_await corio::sleep(0s);  // the lookup runs on the resolver's thread
    s.close();
    CO_EXPECT_THROW_AS(co_await sending, corio::RuntimeError, e,
                       EXPECT_NE(std::string(e.what()).find("closed"), std::string::npos) << e.what());
    DatagramSocket t = co_await corio::open_datagram("127.0.0.1", 0);
    auto connecting = corio::create_task(t.connect("localhost", peer.local_port()));
    co_await corio::sleep(0s);
    t.close();
    CO_EXPECT_THROW_AS(co_await connecting, corio::RuntimeError, e,
                       EXPECT_NE(std::string(e.what()).find("closed"), std::string::npos) << e.what());
  }());
}

TEST(Udp, DestroyingTheSocketWhileAReceiveWaitsEndsTheReceive) {
  run_guarded([]() -> Task<> {
    auto s = std::make_unique<DatagramSocket>(co_await corio::open_datagram("127.0.0.1", 0));
    auto receiving = corio::create_task([](DatagramSocket* d) -> Task<bool> {
      try {
        (void)co_await d->recv_from();
      } catch (const corio::OSError& e) {
        EXPECT_EQ(e.code(), ECANCELED) << e.what();  // as close() (the destructor closes it)
        co_return true;
      }
      co_return false;
    }(s.get()));
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
    s.reset();
    EXPECT_TRUE(co_await receiving);
    // Moved while a receive waits: the receive goes on with the socket's new owner.
    DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
    auto moved_receive = corio::create_task(a.recv());
    co_await corio::sleep(0s);
    DatagramSocket b = std::move(a);
    DatagramSocket sender = co_await corio::open_datagram("127.0.0.1", 0);
    co_await sender.connect("127.0.0.1", b.local_port());
    co_await b.connect("127.0.0.1", sender.local_port());
    co_await sender.send("after the move");
    const std::string got = co_await moved_receive;
    EXPECT_EQ(got, "after the move");
  }());
}

// A name listing IPv4 before IPv6 ("localhost" in Debian's /etc/hosts), sent to from a socket bound to ::1:
// the IPv4 address was tried first and Linux answered ENETUNREACH, which ended the attempt. The socket's own
// family goes first now (Python resolves for that family alone).
TEST(Udp, SendToANameFromAnIpv6SocketReachesTheIpv6Peer) {
  if (!corio_test::ipv6_loopback_available()) GTEST_SKIP() << "no ::1";
  corio_test::FakeName name("v4-then-v6.corio-test.invalid", {"127.0.0.1", "::1"});
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("::1", 0);
    DatagramSocket b = co_await corio::open_datagram("::1", 0);
    co_await a.send_to("six", "v4-then-v6.corio-test.invalid", b.local_port());
    auto [data, from] = co_await b.recv_from();
    EXPECT_EQ(data, "six");
    EXPECT_EQ(from.host(), "::1");
    // connect() likewise picks the peer of the socket's family.
    co_await a.connect("v4-then-v6.corio-test.invalid", b.local_port());
    co_await a.send("again");
    EXPECT_EQ(co_await b.recv(), "again");
  }());
}

// A dual-stack socket connected to an IPv4 peer (getpeername gives ::ffff:127.0.0.1) may name that peer in
// send_to, as Python's sendto on such a socket.
TEST(Udp, ADualStackSocketConnectedToIpv4MaySendToItsPeer) {
  if (!corio_test::ipv6_loopback_available()) GTEST_SKIP() << "no ::1";
  run_guarded([]() -> Task<> {
    DatagramSocket a = co_await corio::open_datagram("::", 0);
    DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
    co_await a.connect("127.0.0.1", b.local_port());
    co_await a.send("via-send");
    EXPECT_EQ(co_await b.recv(), "via-send");
    co_await a.send_to("via-send-to", "127.0.0.1", b.local_port());
    EXPECT_EQ(co_await b.recv(), "via-send-to");
  }());
}
