// Name resolution: getaddrinfo without blocking the loop.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "corio/core/task.hpp"

namespace corio {

struct AddrInfo {
  int family = 0;
  int socktype = 0;
  int protocol = 0;
  sockaddr_storage addr{};
  socklen_t addrlen = 0;

  // The numeric host ("127.0.0.1", "::1") and port of addr.
  std::string host() const;
  std::uint16_t port() const;
  // "127.0.0.1:8080" or "[::1]:8080".
  std::string to_string() const;
};

// Resolves host and service (a port number or a service name) for TCP. Numeric hosts are converted at
// once, without a thread; other lookups run on a small dedicated thread pool, and concurrent lookups of the
// same host and service share one query. The awaiting task suspends until the answer arrives. Throws
// GaiError naming host and service when resolution fails. An empty host means no host (Python's None: the
// loopback addresses; asyncio's getaddrinfo("") raises instead, but a std::string has no None to tell the two
// apart, and start_server and the UDP functions take "" for "no host" too).
Task<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string service);

namespace detail {
// Like getaddrinfo, for the given socket type and flags (AI_PASSIVE for servers).
Task<std::vector<AddrInfo>> resolve(std::string host, std::string service, int socktype, int flags);
}  // namespace detail

}  // namespace corio
