// UDP sockets over the io seam.
#include "corio/net/udp.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "corio/core/errors.hpp"
#include "corio/io/operations.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/socket.hpp"

namespace corio {

// What a datagram socket's operations use. They hold it (not the DatagramSocket, which may be destroyed
// or moved while one waits), so after each wait they find out whether the socket was closed meanwhile.
struct detail::DatagramState {
  int fd = -1;
  int family = AF_UNSPEC;  // the socket's
  std::string peer;
  // Connected: the peer's address (peer_len 0 until connect() succeeds). send_to may name only it.
  sockaddr_storage peer_addr{};
  socklen_t peer_len = 0;
  std::shared_ptr<BackendLink> link;  // its loop's backend, so close() works between runs too

  void close() noexcept {
    close_fd(fd, link.get());
    fd = -1;
  }
  ~DatagramState() { close(); }
};

DatagramSocket::DatagramSocket(int fd) : s_(std::make_shared<detail::DatagramState>()) {
  s_->fd = fd;
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (fd >= 0 && ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) s_->family = a.ss_family;
  if (detail::LoopCore::running_) s_->link = detail::io_backend().link();
}

DatagramSocket& DatagramSocket::operator=(DatagramSocket&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::move(o.s_);
  }
  return *this;
}

void DatagramSocket::close() noexcept {
  if (s_) s_->close();
}
bool DatagramSocket::is_closed() const noexcept { return !s_ || s_->fd < 0; }
int DatagramSocket::native_handle() const noexcept { return s_ ? s_->fd : -1; }

std::uint16_t DatagramSocket::local_port() const { return detail::local_port(native_handle()); }
std::string DatagramSocket::local_address() const { return detail::sock_name(native_handle()); }

namespace {
using State = std::shared_ptr<detail::DatagramState>;

// Throws unless the socket is open; then makes it follow the running loop.
detail::DatagramState& open_state(const State& s) {
  if (!s || s->fd < 0) throw RuntimeError("DatagramSocket is closed");
  detail::follow_running_loop(s->fd, s->link);
  return *s;
}
void check_open(const detail::DatagramState& s) {
  if (s.fd < 0) throw RuntimeError("DatagramSocket is closed");
}
// For an error message: the local address, or why there is none (closed by another task while receiving:
// the receive then ends with ECANCELED).
std::string name_or_closed(int fd) {
  return fd < 0 ? std::string("a socket closed while receiving") : detail::sock_name(fd);
}
std::string peer_name(const detail::DatagramState& s) {
  return s.peer.empty() ? std::string("peer") : s.peer;
}

// Receiving is split in two so that a cancellation never falls between taking a datagram and returning
// it: the task waits for readability (an op that takes nothing, so cancelling it loses nothing), then
// takes the datagram with a non-blocking call on its own turn and returns it without suspending again.
// A receive op that completed with a datagram could otherwise be cancelled before its task ran (a
// cancellation arriving on the same loop turn), dropping the datagram.

// Takes one queued datagram: its length (truncated to buf.size()), or -errno (-EAGAIN: none queued).
std::int64_t take_datagram(int fd, std::string& buf, sockaddr_storage* from, socklen_t* fromlen) {
  for (;;) {
    ssize_t r = from ? ::recvfrom(fd, buf.data(), buf.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(from),
                                  fromlen)
                     : ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (r >= 0) return r;
    if (errno != EINTR) return -errno;
  }
}

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what getpeername gives on a dual-stack socket connected to
// an IPv4 peer) as that IPv4 address; any other address unchanged.
sockaddr_storage unmapped(const sockaddr_storage& a) {
  if (a.ss_family != AF_INET6) return a;
  const auto& x = reinterpret_cast<const sockaddr_in6&>(a);
  if (!IN6_IS_ADDR_V4MAPPED(&x.sin6_addr)) return a;
  sockaddr_storage r{};
  auto& y = reinterpret_cast<sockaddr_in&>(r);
  y.sin_family = AF_INET;
  y.sin_port = x.sin6_port;
  std::memcpy(&y.sin_addr, &x.sin6_addr.s6_addr[12], sizeof y.sin_addr);
  return r;
}

// The same IPv4 or IPv6 address and port (what a connected socket's peer is compared by).
bool same_endpoint(const sockaddr_storage& a0, const sockaddr_storage& b0) {
  const sockaddr_storage a = unmapped(a0);
  const sockaddr_storage b = unmapped(b0);
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    const auto& x = reinterpret_cast<const sockaddr_in&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in&>(b);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  if (a.ss_family == AF_INET6) {
    const auto& x = reinterpret_cast<const sockaddr_in6&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in6&>(b);
    return x.sin6_port == y.sin6_port && x.sin6_scope_id == y.sin6_scope_id &&
           std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
  }
  return false;
}

// The addresses a name resolved to, those of the socket's own family first (keeping their order): an
// IPv6 socket sends to "localhost" at ::1 even where 127.0.0.1 is listed first (Linux answers a socket
// bound to ::1 with ENETUNREACH for an IPv4 address), yet a dual-stack one still reaches an IPv4-only name.
// (Python resolves for the socket's family alone.)
std::vector<AddrInfo> own_family_first(std::vector<AddrInfo> addrs, int family) {
  std::stable_partition(addrs.begin(), addrs.end(),
                        [family](const AddrInfo& ai) { return ai.family == family; });
  return addrs;
}

// The operations: coroutines holding the state, never the DatagramSocket.
Task<> send_to_on(State keep, std::string data, std::string host, std::uint16_t port) {
  detail::DatagramState& s = open_state(keep);
  std::vector<AddrInfo> addrs =
      own_family_first(co_await detail::resolve(host, std::to_string(port), SOCK_DGRAM, 0), s.family);
  check_open(s);  // closed by another task during the lookup
  if (s.peer_len != 0) {
    // Connected: Linux would send to any address given, but the socket talks only to its peer (as asyncio's
    // connected transport: "Invalid address: must be None or <peer>"). Of the addresses, only the peer's.
    std::erase_if(addrs, [&](const AddrInfo& ai) { return !same_endpoint(ai.addr, s.peer_addr); });
    if (addrs.empty())
      throw std::invalid_argument("send_to " + host + ":" + std::to_string(port) +
                                  ": the socket is connected to " + s.peer +
                                  "; send_to may name only that peer (or use send())");
  }
  std::int64_t r = -EAFNOSUPPORT;
  for (AddrInfo& ai : addrs) {
    r = co_await detail::IoAwaiter(detail::OpCode::sendto, s.fd, data.data(), data.size(), 0,
                                   reinterpret_cast<sockaddr*>(&ai.addr), ai.addrlen);
    // Wrong family for this socket, or no route from it: try the next address.
    if (r != -EAFNOSUPPORT && r != -EINVAL && r != -ENETUNREACH) break;
    check_open(s);
  }
  if (r < 0) detail::throw_os_error(static_cast<int>(-r), "send_to " + host + ":" + std::to_string(port));
}

Task<std::pair<std::string, AddrInfo>> recv_from_on(State keep, std::size_t max_size) {
  detail::DatagramState& s = open_state(keep);
  std::string buf(max_size, '\0');
  AddrInfo from;
  for (;;) {
    socklen_t len = sizeof from.addr;
    std::int64_t r = take_datagram(s.fd, buf, &from.addr, &len);
    if (r >= 0) {
      buf.resize(static_cast<std::size_t>(r));
      from.addrlen = len;
      from.family = from.addr.ss_family;
      from.socktype = SOCK_DGRAM;
      from.protocol = IPPROTO_UDP;
      co_return std::pair<std::string, AddrInfo>(std::move(buf), from);
    }
    if (r != -EAGAIN && r != -EWOULDBLOCK)
      detail::throw_os_error(static_cast<int>(-r), "recv_from on " + detail::sock_name(s.fd));
    // Readable, or an error is pending (an ICMP error on a connected socket): take it on the next pass.
    r = co_await detail::IoAwaiter(detail::OpCode::poll_in, s.fd);
    if (r < 0) detail::throw_os_error(static_cast<int>(-r), "recv_from on " + name_or_closed(s.fd));
    check_open(s);  // closed by another task meanwhile
  }
}

Task<> connect_on(State keep, std::string host, std::uint16_t port) {
  detail::DatagramState& s = open_state(keep);
  std::vector<AddrInfo> addrs =
      own_family_first(co_await detail::resolve(host, std::to_string(port), SOCK_DGRAM, 0), s.family);
  check_open(s);  // closed by another task during the lookup
  int r = -EAFNOSUPPORT;
  for (AddrInfo& ai : addrs) {
    r = co_await detail::connect_socket(s.fd, reinterpret_cast<sockaddr*>(&ai.addr), ai.addrlen);
    if (r == 0) break;
    check_open(s);
  }
  if (r < 0) detail::throw_os_error(-r, "connect to " + host + ":" + std::to_string(port));
  s.peer = host + ":" + std::to_string(port);
  s.peer_len = sizeof s.peer_addr;
  if (::getpeername(s.fd, reinterpret_cast<sockaddr*>(&s.peer_addr), &s.peer_len) < 0) s.peer_len = 0;
}

Task<> send_on(State keep, std::string data) {
  detail::DatagramState& s = open_state(keep);
  std::int64_t r = co_await detail::IoAwaiter(detail::OpCode::send, s.fd, data.data(), data.size());
  if (r < 0) detail::throw_os_error(static_cast<int>(-r), "send to " + peer_name(s));
}

Task<std::string> recv_on(State keep, std::size_t max_size) {
  detail::DatagramState& s = open_state(keep);
  std::string buf(max_size, '\0');
  for (;;) {
    std::int64_t r = take_datagram(s.fd, buf, nullptr, nullptr);
    if (r >= 0) {
      buf.resize(static_cast<std::size_t>(r));
      co_return buf;
    }
    if (r != -EAGAIN && r != -EWOULDBLOCK)
      detail::throw_os_error(static_cast<int>(-r), "recv from " + peer_name(s));
    r = co_await detail::IoAwaiter(detail::OpCode::poll_in, s.fd);
    if (r < 0) detail::throw_os_error(static_cast<int>(-r), "recv from " + peer_name(s));
    check_open(s);
  }
}
}  // namespace

Task<> DatagramSocket::send_to(std::string data, std::string host, std::uint16_t port) {
  return send_to_on(s_, std::move(data), std::move(host), port);
}
Task<std::pair<std::string, AddrInfo>> DatagramSocket::recv_from(std::size_t max_size) {
  return recv_from_on(s_, max_size);
}
Task<> DatagramSocket::connect(std::string host, std::uint16_t port) {
  return connect_on(s_, std::move(host), port);
}
Task<> DatagramSocket::send(std::string data) { return send_on(s_, std::move(data)); }
Task<std::string> DatagramSocket::recv(std::size_t max_size) { return recv_on(s_, max_size); }

Task<DatagramSocket> open_datagram(std::string local_host, std::uint16_t local_port) {
  std::vector<AddrInfo> addrs =
      co_await detail::resolve(local_host, std::to_string(local_port), SOCK_DGRAM, AI_PASSIVE);
  std::exception_ptr last;
  for (const AddrInfo& ai : addrs) {
    // A family the host lacks (no IPv6) is passed over, as a bind that fails.
    int fd = ::socket(ai.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai.protocol);
    if (fd < 0) {
      last = detail::make_os_error(errno, "socket for " + ai.to_string());
      continue;
    }
    DatagramSocket sock(fd);
    if (::bind(sock.native_handle(), reinterpret_cast<const sockaddr*>(&ai.addr), ai.addrlen) == 0)
      co_return sock;
    last = detail::make_os_error(errno, "bind " + ai.to_string());
  }
  if (!last) last = std::make_exception_ptr(OSError(EADDRNOTAVAIL, "bind " + local_host + ": no address"));
  std::rethrow_exception(last);
}

}  // namespace corio
