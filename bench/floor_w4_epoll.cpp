// W4 floor: the TCP echo workload with no runtime. One thread, non-blocking sockets, level-triggered
// epoll, one recv and one send per readiness event; the echo server's connections and C client
// connections (default 100) live in the same process, as in bench/w4_echo.cpp. Each client does N round
// trips of 64 bytes. Both sides set TCP_NODELAY (corio does on its streams). The timed part starts at the
// clients' first send and ends at the last reply (steady clock).
//
// Usage: corio_bench_floor_w4_epoll [N [C]]   (default N = 10,000, C = 100)
// Output: one line "RESULT workload=w4 impl=floor backend=epoll n=... conns=... rt_per_s=... ns_per_rt=...
// user_ns_per_rt=... sys_ns_per_rt=..." (as bench/w4_echo.cpp)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu_time.hpp"

namespace {

constexpr int kMsg = 64;

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

void setup_fd(int fd) {
  const int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) die("TCP_NODELAY");
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("O_NONBLOCK");
}

struct Conn {
  int fd = -1;
  bool is_client = false;
  int got = 0;         // client: bytes of the current reply received
  int rounds = 0;      // client: replies received
  char pending[kMsg];  // server: bytes received but not yet echoed (only if a send was short)
  int npending = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 10'000;
  const int conns = argc > 2 ? std::atoi(argv[2]) : 100;
  if (n <= 0 || conns <= 0) {
    std::fprintf(stderr, "usage: %s [N > 0 [C > 0]]\n", argv[0]);
    return 2;
  }
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  if (lfd < 0) die("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // 127.0.0.1, port 0
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) die("bind");
  if (listen(lfd, 1024) < 0) die("listen");
  socklen_t alen = sizeof addr;
  if (getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen) < 0) die("getsockname");

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  std::vector<Conn> cs(static_cast<std::size_t>(2 * conns));
  for (int c = 0; c < conns; ++c) {
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    if (cfd < 0) die("socket");
    if (connect(cfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) die("connect");
    int sfd = accept(lfd, nullptr, nullptr);
    if (sfd < 0) die("accept");
    setup_fd(cfd);
    setup_fd(sfd);
    Conn& cl = cs[static_cast<std::size_t>(2 * c)];
    Conn& sv = cs[static_cast<std::size_t>(2 * c + 1)];
    cl.fd = cfd;
    cl.is_client = true;
    sv.fd = sfd;
    for (Conn* p : {&cl, &sv}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = p;
      if (epoll_ctl(ep, EPOLL_CTL_ADD, p->fd, &ev) < 0) die("epoll_ctl");
    }
  }
  close(lfd);

  char msg[kMsg];
  std::memset(msg, 'x', sizeof msg);
  const auto t0 = std::chrono::steady_clock::now();
  const corio_bench::CpuTime cpu0 = corio_bench::cpu_time();
  for (int c = 0; c < conns; ++c)
    if (send(cs[static_cast<std::size_t>(2 * c)].fd, msg, kMsg, 0) != kMsg) die("send");
  int done = 0;
  long bad = 0;
  std::vector<epoll_event> evs(256);
  char buf[64 * 1024];
  while (done < conns) {
    int k = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), -1);
    if (k < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < k; ++i) {
      Conn& c = *static_cast<Conn*>(evs[i].data.ptr);
      if (c.fd < 0) continue;
      if (c.is_client) {
        ssize_t r = recv(c.fd, buf, sizeof buf, 0);  // one recv per event
        if (r <= 0) {
          if (r < 0 && errno == EAGAIN) continue;
          die("client recv");
        }
        for (ssize_t j = 0; j < r; ++j) bad += buf[j] != 'x';
        c.got += static_cast<int>(r);
        if (c.got < kMsg) continue;
        c.got -= kMsg;
        if (++c.rounds == n) {
          ++done;
          epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
          continue;
        }
        if (send(c.fd, msg, kMsg, 0) != kMsg) die("client send");  // one send per event
      } else if (evs[i].events & EPOLLOUT) {  // only after a short send (never seen on loopback)
        ssize_t w = send(c.fd, c.pending, static_cast<std::size_t>(c.npending), 0);
        if (w < 0) die("server send");
        std::memmove(c.pending, c.pending + w, static_cast<std::size_t>(c.npending - w));
        c.npending -= static_cast<int>(w);
        if (c.npending == 0) {
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.ptr = &c;
          epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        }
      } else {
        ssize_t r = recv(c.fd, buf, kMsg, 0);  // one recv per event
        if (r <= 0) {
          if (r < 0 && errno == EAGAIN) continue;
          die("server recv");
        }
        ssize_t w = send(c.fd, buf, static_cast<std::size_t>(r), 0);  // one send per event
        if (w < 0) die("server send");
        if (w < r) {
          std::memcpy(c.pending, buf + w, static_cast<std::size_t>(r - w));
          c.npending = static_cast<int>(r - w);
          epoll_event ev{};
          ev.events = EPOLLOUT;
          ev.data.ptr = &c;
          epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        }
      }
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  const corio_bench::CpuTime cpu1 = corio_bench::cpu_time();
  for (Conn& c : cs) close(c.fd);
  close(ep);
  if (bad) {
    std::fprintf(stderr, "floor_w4: %ld wrong bytes\n", bad);
    return 1;
  }
  const double s = std::chrono::duration<double>(t1 - t0).count();
  const double total = static_cast<double>(n) * conns;
  std::printf(
      "RESULT workload=w4 impl=floor backend=epoll n=%d conns=%d rt_per_s=%.0f ns_per_rt=%.1f "
      "user_ns_per_rt=%.1f "
      "sys_ns_per_rt=%.1f\n",
      n, conns, total / s, s * 1e9 / total, (cpu1.user_s - cpu0.user_s) * 1e9 / total,
      (cpu1.sys_s - cpu0.sys_s) * 1e9 / total);
  return 0;
}
