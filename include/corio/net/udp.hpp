// UDP: datagram sockets (asyncio's create_datagram_endpoint, as awaitable calls instead of a protocol).
//
// send_to/send complete without suspending on epoll unless the socket buffer is full (then the task
// suspends until it is writable); on io_uring they complete on the next turn. recv_from/recv suspend until a
// datagram arrives. Resumed by the loop on the turn the kernel
// reports readiness. Cancelling a receive loses no datagram (none is taken until one is returned).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "corio/core/task.hpp"
#include "corio/net/dns.hpp"

namespace corio {

namespace detail {
struct BackendLink;
}

class DatagramSocket {
 public:
  DatagramSocket() = default;
  // Takes fd over; made in a running loop, it belongs to that loop.
  explicit DatagramSocket(int fd) noexcept;
  DatagramSocket(DatagramSocket&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), peer_(std::move(o.peer_)), link_(std::move(o.link_)) {}
  DatagramSocket& operator=(DatagramSocket&& o) noexcept;
  ~DatagramSocket() { close(); }

  // Sends one datagram to host:port (a numeric host, or a name resolved first).
  Task<> send_to(std::string data, std::string host, std::uint16_t port);
  // Receives one datagram (at most max_size bytes; longer ones are truncated) and its sender.
  Task<std::pair<std::string, AddrInfo>> recv_from(std::size_t max_size = 65536);
  // Fixes the peer: send() and recv() then talk only to it (connected UDP).
  Task<> connect(std::string host, std::uint16_t port);
  Task<> send(std::string data);
  Task<std::string> recv(std::size_t max_size = 65536);

  std::uint16_t local_port() const;
  std::string local_address() const;
  void close() noexcept;
  bool is_closed() const noexcept { return fd_ < 0; }
  int native_handle() const noexcept { return fd_; }

 private:
  int fd_ = -1;
  std::string peer_;
  std::shared_ptr<detail::BackendLink> link_;  // its loop's backend, so close() works between runs too
};

// A UDP socket bound to local_host:local_port (port 0: ephemeral). Throws OSError or GaiError.
Task<DatagramSocket> open_datagram(std::string local_host, std::uint16_t local_port);

}  // namespace corio
