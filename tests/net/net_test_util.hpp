// Helpers shared by the net tests: assertions usable inside coroutines, a hang guard around corio::run,
// raw (non-corio) loopback sockets to play the peer, descriptor counting and lookup (/proc/self/fd), and
// log capture.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/log.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/wait_for.hpp"
#include "corio/net/socket.hpp"
#include "corio/net/stream.hpp"

#include "common/co_assert.hpp"

namespace corio_test {

using namespace std::chrono_literals;

// Every test body runs under this guard: a hang becomes a TimeoutError (a failure), never a stuck binary.
inline constexpr auto kHangGuard = 10s;

template <class T>
T run_guarded(corio::Task<T> body, std::chrono::nanoseconds guard = kHangGuard) {
  return corio::run(corio::wait_for(std::move(body), guard));
}

// Yields to the loop `n` times: lets every operation that can progress without the outside world do so.
inline corio::Task<> turns(int n) {
  for (int i = 0; i < n; ++i) co_await corio::sleep(0s);
}

// Waits until pred() holds, one loop turn at a time: at most max_turns when given (a bound, never a
// timing: for "this has not happened within so many turns"), else for as long as kHangGuard (what is
// waited for is another thread, process or peer, which a loaded machine may keep from running for a
// while: a count of turns, ~1 s under ASan then, was a timeout in disguise).
template <class Pred>
corio::Task<bool> until(Pred pred, int max_turns = -1) {
  const auto give_up = std::chrono::steady_clock::now() + kHangGuard;
  for (int i = 0; max_turns < 0 ? std::chrono::steady_clock::now() < give_up : i < max_turns; ++i) {
    if (pred()) co_return true;
    co_await corio::sleep(0s);
  }
  co_return pred();
}

// Whether a socket can bind ::1 here (some containers have no IPv6): IPv6 tests skip otherwise.
inline bool ipv6_loopback_available() {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

inline sockaddr_in loopback4(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

inline std::uint16_t port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) < 0) return 0;
  return ntohs(a.sin_port);
}

// The descriptors open in this process (the entries of /proc/self/fd, less the one reading it).
inline int open_fd_count() {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) throw std::runtime_error("opendir /proc/self/fd");
  int n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;
}

// The streams do not show their descriptors: finds the one socket of this process whose local and peer
// addresses are these ("127.0.0.1:5000"), by asking each descriptor in /proc/self/fd. -1 if none, -2 if
// several.
inline int find_socket_fd(const std::string& local, const std::string& peer) {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) throw std::runtime_error("opendir /proc/self/fd");
  int found = -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd == ::dirfd(d)) continue;
    if (corio::detail::sock_name(fd) == local && corio::detail::peer_name(fd) == peer)
      found = found == -1 ? fd : -2;
  }
  ::closedir(d);
  return found;
}

// getsockopt(TCP_NODELAY): 1 or 0, -1 on error.
inline int tcp_nodelay(int fd) {
  int v = 0;
  socklen_t len = sizeof v;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) < 0) return -1;
  return v ? 1 : 0;
}

// A descriptor closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  // Closes with SO_LINGER {on, 0}: the kernel sends RST instead of FIN.
  void reset_connection() {
    if (fd_ < 0) return;
    linger lg{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    reset();
  }

 private:
  int fd_ = -1;
};

// A plain blocking TCP listener on 127.0.0.1, port 0.
class RawListener {
 public:
  explicit RawListener(int backlog = 16) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_.get() < 0) throw std::runtime_error("socket");
    sockaddr_in a = loopback4(0);
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) throw std::runtime_error("bind");
    if (::listen(fd_.get(), backlog) < 0) throw std::runtime_error("listen");
    port_ = port_of(fd_.get());
  }
  std::uint16_t port() const { return port_; }
  int fd() const { return fd_.get(); }
  // Only call when a connection is known to be queued (a connect to it completed): never blocks then.
  Fd accept() {
    int c = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) throw std::runtime_error(std::string("accept: ") + std::strerror(errno));
    return Fd(c);
  }

 private:
  Fd fd_;
  std::uint16_t port_ = 0;
};

// Writes all of `data` to a blocking descriptor (small amounts only when called on the loop thread).
inline void raw_send(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Awaits a task that should end cancelled: true when awaiting it throws CancelledError.
template <class Handle>
corio::Task<bool> ends_cancelled(Handle& t) {
  try {
    (void)co_await t;
  } catch (const corio::CancelledError&) {
    co_return true;
  }
  co_return false;
}

// Reads until EOF from a blocking descriptor (run it off the loop thread, e.g. through corio::to_thread).
inline std::string raw_read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

// A TCP connection over loopback with a corio stream at one end (`reader`, `writer`: the client made by
// open_connection) and a raw blocking descriptor at the other (`peer`, accepted from a raw listener).
struct RawPeerConnection {
  RawListener listener;
  corio::StreamReader reader;
  corio::StreamWriter writer;
  Fd peer;
};

inline corio::Task<RawPeerConnection> connect_to_raw_peer() {
  RawPeerConnection c;
  auto [r, w] = co_await corio::open_connection("127.0.0.1", c.listener.port());
  c.reader = std::move(r);
  c.writer = std::move(w);
  c.peer = c.listener.accept();  // the handshake is done: the connection is queued
  co_return c;
}

// Captures corio's log lines while alive; `on_line` (optional) runs for each one, on the logging thread.
class LogCapture {
 public:
  explicit LogCapture(std::function<void(std::string_view)> on_line = {}) : on_line_(std::move(on_line)) {
    old_ = corio::set_log_handler([this](std::string_view m) {
      lines_.emplace_back(m);
      if (on_line_) on_line_(m);
    });
  }
  ~LogCapture() { corio::set_log_handler(std::move(old_)); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::string text() const {
    std::string out;
    for (const auto& l : lines_) out += l + "\n";
    return out;
  }
  bool contains(std::string_view needle) const { return text().find(needle) != std::string::npos; }

 private:
  std::function<void(std::string_view)> on_line_;
  std::function<void(std::string_view)> old_;
  std::vector<std::string> lines_;
};

}  // namespace corio_test

#include "corio/net/server.hpp"

namespace corio_test {

// A line echo server on 127.0.0.1, ephemeral port: echoes each line until the client's EOF.
inline corio::Task<corio::Server> start_echo_server(corio::ServerOptions options = {}) {
  co_return co_await corio::start_server(
      [](corio::StreamReader r, corio::StreamWriter w) -> corio::Task<> {
        for (;;) {
          std::string line = co_await r.readline();
          if (line.empty()) break;
          w.write(line);
          co_await w.drain();
        }
        w.close();
        co_await w.wait_closed();
      },
      "127.0.0.1", 0, options);
}

}  // namespace corio_test
