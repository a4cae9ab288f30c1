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
struct DatagramState;
}

class DatagramSocket {
 public:
  DatagramSocket() = default;
  // Takes fd over; made in a running loop, it belongs to that loop.
  explicit DatagramSocket(int fd);
  DatagramSocket(DatagramSocket&& o) noexcept = default;
  DatagramSocket& operator=(DatagramSocket&& o) noexcept;
  ~DatagramSocket() { close(); }

  // Sends one datagram to host:port (a numeric host, or a name resolved first). On a connected socket
  // host:port must be its peer: another address throws std::invalid_argument (asyncio's ValueError).
  Task<> send_to(std::string data, std::string host, std::uint16_t port);
  // Receives one datagram (at most max_size bytes; longer ones are truncated) and its sender.
  Task<std::pair<std::string, AddrInfo>> recv_from(std::size_t max_size = 65536);
  // Fixes the peer: send() and recv() then talk only to it (connected UDP).
  Task<> connect(std::string host, std::uint16_t port);
  Task<> send(std::string data);
  Task<std::string> recv(std::size_t max_size = 65536);

  std::uint16_t local_port() const;
  std::string local_address() const;
  // Closes the socket: an operation waiting on it (in another task) ends with an error. So does one
  // waiting when the DatagramSocket is destroyed or moved to: the operations hold the socket's state,
  // not the object.
  void close() noexcept;
  bool is_closed() const noexcept;
  int native_handle() const noexcept;

 private:
  std::shared_ptr<detail::DatagramState> s_;
};

// A UDP socket bound to local_host:local_port (port 0: ephemeral). Throws OSError or GaiError.
Task<DatagramSocket> open_datagram(std::string local_host, std::uint16_t local_port);

}  // namespace corio
