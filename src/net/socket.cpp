// Socket helpers, network errors, and open_connection.
#include "corio/net/socket.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "corio/core/errors.hpp"
#include "corio/flow/wait_for.hpp"
#include "corio/io/operations.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/stream.hpp"

namespace corio {

OSError::OSError(int code, const std::string& what) : Error(what), code_(code) {}

GaiError::GaiError(int eai_code, const std::string& host, const std::string& service, int sys_errno)
    : OSError(eai_code,
              "getaddrinfo(" + host + ", " + service + "): " + ::gai_strerror(eai_code) +
                  (eai_code == EAI_SYSTEM && sys_errno ? std::string(": ") + std::strerror(sys_errno)
                                                       : std::string())) {}

namespace detail {

std::exception_ptr make_os_error(int err, const std::string& what) {
  std::string msg = what + ": " + std::strerror(err);
  switch (err) {
    case ECONNREFUSED:
      return std::make_exception_ptr(ConnectionRefusedError(err, msg));
    case ECONNRESET:
      return std::make_exception_ptr(ConnectionResetError(err, msg));
    case ECONNABORTED:
      return std::make_exception_ptr(ConnectionAbortedError(err, msg));
    case EPIPE:
    case ESHUTDOWN:
      return std::make_exception_ptr(BrokenPipeError(err, msg));
    case ETIMEDOUT:
      return std::make_exception_ptr(TimeoutError(msg));
    default:
      return std::make_exception_ptr(OSError(err, msg));
  }
}

void throw_os_error(int err, const std::string& what) { std::rethrow_exception(make_os_error(err, what)); }

void close_fd(int fd) noexcept {
  if (fd < 0) return;
  if (LoopCore::running_) io_backend().forget(fd);
  ::close(fd);
}

void close_fd(int fd, const BackendLink* owner) noexcept {
  if (fd < 0) return;
  IoBackend* running = LoopCore::running_ ? &io_backend() : nullptr;
  IoBackend* made_in = owner ? owner->backend : nullptr;
  if (made_in) {
    made_in->forget(fd);
    if (made_in != running) made_in->flush();
  }
  // Used in another loop than the one it was made in (a datagram socket can be): that loop's backend
  // knows the descriptor too.
  if (running && running != made_in) running->forget(fd);
  ::close(fd);
}

void follow_running_loop(int fd, std::shared_ptr<BackendLink>& link) noexcept {
  if (!LoopCore::running_ || fd < 0) return;
  IoBackend& running = io_backend();
  if (link && link->backend == &running) return;
  if (link && link->backend) {
    link->backend->forget(fd);
    link->backend->flush();  // (its loop is not running: this one is)
  }
  link = running.link();
}

void IoAwaiter::describe(std::string& out) const {
  static const char* const names[] = {"recv",    "send",     "sendmsg", "read",    "write",   "accept",
                                      "connect", "recvfrom", "sendto",  "poll_in", "poll_out"};
  out += names[static_cast<int>(code)];
  out += " on fd " + std::to_string(fd);
}

std::string unix_path_text(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == '\0')
      out += "\\0";
    else
      out += c;
  }
  return out;
}

socklen_t unix_address(const std::string& path, sockaddr_un& addr, const char* verb) {
  addr = sockaddr_un{};
  addr.sun_family = AF_UNIX;
  auto fail = [&](int err, const char* why) {
    throw OSError(err, std::string(verb) + " " + unix_path_text(path) + ": " + why);
  };
  if (path.empty()) fail(EINVAL, "the Unix socket path is empty");
  const bool abstract = path[0] == '\0';
  // A file's path needs room for its terminating NUL; an abstract name (its length given) may fill sun_path.
  if (path.size() > sizeof addr.sun_path - (abstract ? 0 : 1)) fail(ENAMETOOLONG, "path too long");
  if (!abstract && path.find('\0') != std::string::npos)
    fail(EINVAL, "the Unix socket path holds a NUL byte");
  std::memcpy(addr.sun_path, path.data(), path.size());
  return static_cast<socklen_t>(abstract ? offsetof(sockaddr_un, sun_path) + path.size() : sizeof addr);
}

int open_socket(int family, int type, int protocol) {
  int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw_os_error(errno, "socket");
  return fd;
}

std::string format_sockaddr(const sockaddr* addr, socklen_t len) {
  char host[INET6_ADDRSTRLEN] = {};
  if (addr->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    std::string out = "[";  // (built by appends: g++ 12 warns falsely, -Wrestrict, on "[" + string)
    out += host;
    out += "]:";
    out += std::to_string(ntohs(in6->sin6_port));
    return out;
  }
  if (addr->sa_family == AF_UNIX) {
    auto* un = reinterpret_cast<const sockaddr_un*>(addr);
    std::size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    // An abstract name starts with a NUL byte and is exactly n bytes long (as Python's b'\x00name').
    if (n > 0 && un->sun_path[0] == '\0') return std::string(un->sun_path, n);
    return std::string(un->sun_path, strnlen(un->sun_path, n));
  }
  return std::string();
}

std::string peer_name(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return std::string();
  return format_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

std::string sock_name(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return std::string();
  return format_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

std::uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

void set_nodelay(int fd) noexcept {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Task<int> connect_socket(int fd, const sockaddr* addr, socklen_t len) {
  std::int64_t r = co_await IoAwaiter(OpCode::connect, fd, nullptr, 0, 0, const_cast<sockaddr*>(addr), len);
  co_return static_cast<int>(r);
}

Task<int> accept_socket(int listen_fd, bool only_when_asked) {
  std::int64_t r =
      co_await IoAwaiter(OpCode::accept, listen_fd, nullptr, 0, only_when_asked ? kAcceptOnlyWhenAsked : 0);
  co_return static_cast<int>(r);
}

int accept_now(int listen_fd) noexcept {
  struct NowOp final : IoOp {
    void complete() override {}
  } op;
  op.code = OpCode::accept;
  op.fd = listen_fd;
  IoBackend& be = io_backend();
  if (be.try_now(op)) return static_cast<int>(op.result);  // (one the backend holds)
  be.discard(op);  // (forgets that it was tried: it is never submitted)
  // One the kernel has ready that the backend has not taken (io_uring takes them in the kernel's task work,
  // which runs when the loop next polls).
  int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  return fd >= 0 ? fd : -errno;
}

namespace {
// Closes the descriptor unless released: no leak on any exit path, cancellation included.
struct FdGuard {
  int fd;
  ~FdGuard() { close_fd(fd); }
  int release() { return std::exchange(fd, -1); }
};

Task<int> connect_to(const AddrInfo& ai, std::string what) {
  FdGuard guard{open_socket(ai.family, SOCK_STREAM, ai.protocol)};
  int r = co_await connect_socket(guard.fd, reinterpret_cast<const sockaddr*>(&ai.addr), ai.addrlen);
  if (r < 0) throw_os_error(-r, "connect to " + what);
  co_return guard.release();
}
}  // namespace

}  // namespace detail

Task<std::pair<StreamReader, StreamWriter>> open_connection(std::string host, std::uint16_t port,
                                                            ConnectOptions options) {
  if (options.tls) throw Error("open_connection(): TLS is not available yet (the tls layer is not built)");
  std::vector<AddrInfo> addrs = co_await detail::resolve(host, std::to_string(port), SOCK_STREAM, 0);
  std::exception_ptr last;
  for (const AddrInfo& ai : addrs) {
    std::string what = host + ":" + std::to_string(port);
    if (ai.host() != host) what += " (" + ai.to_string() + ")";
    try {
      int fd = options.timeout ? co_await wait_for(detail::connect_to(ai, what), *options.timeout)
                               : co_await detail::connect_to(ai, what);
      detail::set_nodelay(fd);
      co_return detail::make_stream(fd, true, detail::peer_name(fd));
    } catch (const TimeoutError&) {
      last = std::make_exception_ptr(TimeoutError("connect to " + what + ": timed out"));
    } catch (const OSError&) {
      last = std::current_exception();
    }
  }
  if (!last) last = std::make_exception_ptr(OSError(EADDRNOTAVAIL, "connect to " + host + ": no address"));
  std::rethrow_exception(last);
}

Task<std::pair<StreamReader, StreamWriter>> open_unix_connection(std::string path) {
  sockaddr_un addr;
  const socklen_t len = detail::unix_address(path, addr, "connect to");
  detail::FdGuard guard{detail::open_socket(AF_UNIX, SOCK_STREAM)};
  int r = co_await detail::connect_socket(guard.fd, reinterpret_cast<sockaddr*>(&addr), len);
  if (r == -EAGAIN)
    detail::throw_os_error(
        EAGAIN, "connect to " + detail::unix_path_text(path) + ": the server's accept backlog is full");
  if (r < 0) detail::throw_os_error(-r, "connect to " + detail::unix_path_text(path));
  co_return detail::make_stream(guard.release(), true, path);
}

}  // namespace corio
