// W5 floor: the keep-alive "Hello, World!" responder of bench/w5_http.cpp with no runtime. One thread,
// non-blocking sockets, level-triggered epoll; per readiness event one recv, then for every complete
// request ("\r\n\r\n") found one response, all sent with one send. Accepted sockets get TCP_NODELAY, as
// corio's do. Listens on 127.0.0.1:0, prints "PORT <port>" on stdout, serves until killed (SIGTERM) or
// --seconds S have passed (default 120).
//
// Usage: corio_bench_floor_w5_epoll [--seconds S]
#include <arpa/inet.h>
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
#include <string>
#include <string_view>

namespace {

constexpr std::string_view kResponse = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

struct Conn {
  int fd;
  std::string in;  // bytes of an incomplete request
};

}  // namespace

int main(int argc, char** argv) {
  double seconds = 120;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--seconds S]\n", argv[0]);
      return 2;
    }
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  const int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // 127.0.0.1, port 0
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) die("bind");
  if (listen(lfd, 1024) < 0) die("listen");
  socklen_t alen = sizeof addr;
  if (getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen) < 0) die("getsockname");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.ptr = nullptr;  // the listener
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl");
  std::printf("PORT %u\n", static_cast<unsigned>(ntohs(addr.sin_port)));
  std::fflush(stdout);

  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
  epoll_event evs[256];
  char buf[64 * 1024];
  std::string out;
  for (;;) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) break;
    const int timeout_ms =
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(left).count()) + 1;
    int k = epoll_wait(ep, evs, 256, timeout_ms);
    if (k < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < k; ++i) {
      auto* c = static_cast<Conn*>(evs[i].data.ptr);
      if (c == nullptr) {  // one accept per event
        int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = new Conn{fd, {}};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
        continue;
      }
      ssize_t r = recv(c->fd, buf, sizeof buf, 0);  // one recv per event
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0) {
        close(c->fd);  // also removes it from the epoll set
        delete c;
        continue;
      }
      std::string_view data(buf, static_cast<std::size_t>(r));
      if (!c->in.empty()) {
        c->in.append(data);
        data = c->in;
      }
      out.clear();
      std::size_t pos = 0;
      for (std::size_t at; (at = data.find("\r\n\r\n", pos)) != std::string_view::npos; pos = at + 4)
        out.append(kResponse);
      std::string rest(data.substr(pos));
      c->in.swap(rest);
      if (!out.empty() && send(c->fd, out.data(), out.size(), MSG_NOSIGNAL) < 0 && errno != EAGAIN) {
        close(c->fd);
        delete c;
      }
    }
  }
  return 0;
}
