// Socket helpers shared by the network layer: creation, options, addresses. POSIX calls only; whatever
// depends on the backend goes through corio::detail::IoBackend.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>

#include "corio/core/task.hpp"
#include "corio/net/dns.hpp"

namespace corio::detail {

// Fills addr with a Unix socket path and returns its length. A path starting with a NUL byte names an
// abstract socket (Linux), given with its exact length; otherwise the path may hold no NUL byte. Throws
// OSError "<verb> <path>: ..." (verb: "bind", "connect to") for an empty, too long or NUL-holding path.
socklen_t unix_address(const std::string& path, sockaddr_un& addr, const char* verb);
// The path for messages: NUL bytes written as \0 (an abstract name starts with one).
std::string unix_path_text(const std::string& path);
// A non-blocking, close-on-exec socket; throws OSError.
int open_socket(int family, int type, int protocol = 0);
// "127.0.0.1:80", "[::1]:80", or a Unix path.
std::string format_sockaddr(const sockaddr* addr, socklen_t len);
std::string peer_name(int fd);
std::string sock_name(int fd);
std::uint16_t local_port(int fd);
void set_nodelay(int fd) noexcept;
// Connects a non-blocking socket; returns 0 or -errno. The awaiting task suspends until the kernel
// answers; cancellation abandons the attempt (the caller closes the socket).
Task<int> connect_socket(int fd, const sockaddr* addr, socklen_t len);
// Accepts one connection; returns the new descriptor or -errno.
// only_when_asked: never accept ahead of the caller (see kAcceptOnlyWhenAsked).
Task<int> accept_socket(int listen_fd, bool only_when_asked = false);
// A connection accepted at once, without waiting (one the backend already holds, else one a non-blocking
// accept takes from the kernel's backlog), or -errno (-EAGAIN: none now).
int accept_now(int listen_fd) noexcept;

}  // namespace corio::detail
