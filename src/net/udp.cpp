// UDP sockets over the io seam.
#include "corio/net/udp.hpp"

#include <netdb.h>

#include <cerrno>

#include "corio/core/errors.hpp"
#include "corio/io/operations.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/socket.hpp"

namespace corio {

DatagramSocket& DatagramSocket::operator=(DatagramSocket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    peer_ = std::move(o.peer_);
  }
  return *this;
}

void DatagramSocket::close() noexcept {
  detail::close_fd(fd_);
  fd_ = -1;
}

std::uint16_t DatagramSocket::local_port() const { return detail::local_port(fd_); }
std::string DatagramSocket::local_address() const { return detail::sock_name(fd_); }

namespace {
void check_open(int fd) {
  if (fd < 0) throw RuntimeError("DatagramSocket is closed");
}
}  // namespace

Task<> DatagramSocket::send_to(std::string data, std::string host, std::uint16_t port) {
  check_open(fd_);
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
  std::string buf(max_size, '\0');
  AddrInfo from;
  detail::IoAwaiter op(detail::OpCode::recvfrom, fd_, buf.data(), buf.size(), 0,
                       reinterpret_cast<sockaddr*>(&from.addr), sizeof from.addr);
  std::int64_t r = co_await op;
  if (r < 0) detail::throw_os_error(static_cast<int>(-r), "recv_from on " + local_address());
  buf.resize(static_cast<std::size_t>(r));
  from.addrlen = op.addrlen;
  from.family = from.addr.ss_family;
  from.socktype = SOCK_DGRAM;
  co_return std::pair<std::string, AddrInfo>(std::move(buf), from);
}

Task<> DatagramSocket::connect(std::string host, std::uint16_t port) {
  check_open(fd_);
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
  std::int64_t r = co_await detail::IoAwaiter(detail::OpCode::send, fd_, data.data(), data.size());
  if (r < 0)
    detail::throw_os_error(static_cast<int>(-r), "send to " + (peer_.empty() ? std::string("peer") : peer_));
}

Task<std::string> DatagramSocket::recv(std::size_t max_size) {
  check_open(fd_);
  std::string buf(max_size, '\0');
  std::int64_t r = co_await detail::IoAwaiter(detail::OpCode::recv, fd_, buf.data(), buf.size());
  if (r < 0)
    detail::throw_os_error(static_cast<int>(-r),
                           "recv from " + (peer_.empty() ? std::string("peer") : peer_));
  buf.resize(static_cast<std::size_t>(r));
  co_return buf;
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
