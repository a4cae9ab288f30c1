// UDP sockets over the io seam.
#include "corio/net/udp.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

#include "corio/core/errors.hpp"
#include "corio/io/operations.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/socket.hpp"

namespace corio {

DatagramSocket::DatagramSocket(int fd) noexcept : fd_(fd) {
  if (detail::LoopCore::running_) link_ = detail::io_backend().link();
}

DatagramSocket& DatagramSocket::operator=(DatagramSocket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    peer_ = std::move(o.peer_);
    link_ = std::move(o.link_);
  }
  return *this;
}

void DatagramSocket::close() noexcept {
  detail::close_fd(fd_, link_.get());
  fd_ = -1;
}

std::uint16_t DatagramSocket::local_port() const { return detail::local_port(fd_); }
std::string DatagramSocket::local_address() const { return detail::sock_name(fd_); }

namespace {
void check_open(int fd) {
  if (fd < 0) throw RuntimeError("DatagramSocket is closed");
}
// For an error message: the local address, or why there is none (closed by another task while receiving:
// the receive then ends with ECANCELED).
std::string name_or_closed(int fd) {
  return fd < 0 ? std::string("a socket closed while receiving") : detail::sock_name(fd);
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
}  // namespace

Task<> DatagramSocket::send_to(std::string data, std::string host, std::uint16_t port) {
  check_open(fd_);
  detail::follow_running_loop(fd_, link_);
  std::vector<AddrInfo> addrs = co_await detail::resolve(host, std::to_string(port), SOCK_DGRAM, 0);
  std::int64_t r = -EAFNOSUPPORT;
  for (AddrInfo& ai : addrs) {
    r = co_await detail::IoAwaiter(detail::OpCode::sendto, fd_, data.data(), data.size(), 0,
                                   reinterpret_cast<sockaddr*>(&ai.addr), ai.addrlen);
    if (r != -EAFNOSUPPORT && r != -EINVAL) break;  // wrong family for this socket: try the next address
  }
  if (r < 0) detail::throw_os_error(static_cast<int>(-r), "send_to " + host + ":" + std::to_string(port));
}

Task<std::pair<std::string, AddrInfo>> DatagramSocket::recv_from(std::size_t max_size) {
  check_open(fd_);
  detail::follow_running_loop(fd_, link_);
  std::string buf(max_size, '\0');
  AddrInfo from;
  for (;;) {
    socklen_t len = sizeof from.addr;
    std::int64_t r = take_datagram(fd_, buf, &from.addr, &len);
    if (r >= 0) {
      buf.resize(static_cast<std::size_t>(r));
      from.addrlen = len;
      from.family = from.addr.ss_family;
      from.socktype = SOCK_DGRAM;
      from.protocol = IPPROTO_UDP;
      co_return std::pair<std::string, AddrInfo>(std::move(buf), from);
    }
    if (r != -EAGAIN && r != -EWOULDBLOCK)
      detail::throw_os_error(static_cast<int>(-r), "recv_from on " + local_address());
    // Readable, or an error is pending (an ICMP error on a connected socket): take it on the next pass.
    r = co_await detail::IoAwaiter(detail::OpCode::poll_in, fd_);
    if (r < 0) detail::throw_os_error(static_cast<int>(-r), "recv_from on " + name_or_closed(fd_));
    check_open(fd_);  // closed by another task meanwhile
  }
}

Task<> DatagramSocket::connect(std::string host, std::uint16_t port) {
  check_open(fd_);
  detail::follow_running_loop(fd_, link_);
  std::vector<AddrInfo> addrs = co_await detail::resolve(host, std::to_string(port), SOCK_DGRAM, 0);
  int r = -EAFNOSUPPORT;
  for (AddrInfo& ai : addrs) {
    r = co_await detail::connect_socket(fd_, reinterpret_cast<sockaddr*>(&ai.addr), ai.addrlen);
    if (r == 0) break;
  }
  if (r < 0) detail::throw_os_error(-r, "connect to " + host + ":" + std::to_string(port));
  peer_ = host + ":" + std::to_string(port);
}

Task<> DatagramSocket::send(std::string data) {
  check_open(fd_);
  detail::follow_running_loop(fd_, link_);
  std::int64_t r = co_await detail::IoAwaiter(detail::OpCode::send, fd_, data.data(), data.size());
  if (r < 0)
    detail::throw_os_error(static_cast<int>(-r), "send to " + (peer_.empty() ? std::string("peer") : peer_));
}

Task<std::string> DatagramSocket::recv(std::size_t max_size) {
  check_open(fd_);
  detail::follow_running_loop(fd_, link_);
  auto recv_what = [this] { return "recv from " + (peer_.empty() ? std::string("peer") : peer_); };
  std::string buf(max_size, '\0');
  for (;;) {
    std::int64_t r = take_datagram(fd_, buf, nullptr, nullptr);
    if (r >= 0) {
      buf.resize(static_cast<std::size_t>(r));
      co_return buf;
    }
    if (r != -EAGAIN && r != -EWOULDBLOCK) detail::throw_os_error(static_cast<int>(-r), recv_what());
    r = co_await detail::IoAwaiter(detail::OpCode::poll_in, fd_);
    if (r < 0) detail::throw_os_error(static_cast<int>(-r), recv_what());
    check_open(fd_);
  }
}

Task<DatagramSocket> open_datagram(std::string local_host, std::uint16_t local_port) {
  std::vector<AddrInfo> addrs =
      co_await detail::resolve(local_host, std::to_string(local_port), SOCK_DGRAM, AI_PASSIVE);
  std::exception_ptr last;
  for (const AddrInfo& ai : addrs) {
    DatagramSocket sock(detail::open_socket(ai.family, SOCK_DGRAM, ai.protocol));
    if (::bind(sock.native_handle(), reinterpret_cast<const sockaddr*>(&ai.addr), ai.addrlen) == 0)
      co_return sock;
    last = detail::make_os_error(errno, "bind " + ai.to_string());
  }
  if (!last) last = std::make_exception_ptr(OSError(EADDRNOTAVAIL, "bind " + local_host + ": no address"));
  std::rethrow_exception(last);
}

}  // namespace corio
