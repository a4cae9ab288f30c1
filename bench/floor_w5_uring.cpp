// W5 floor on io_uring: the keep-alive "Hello, World!" responder of bench/floor_w5_epoll.cpp with raw
// liburing and no runtime, in the design corio's io_uring backend uses. One thread; one multishot accept
// on the listening socket; one multishot receive per connection into a ring of provided buffers (1024 x
// 4 KiB); for every complete request ("\r\n\r\n") found in what arrived, one response, all sent with one
// IORING_OP_SEND (responses found while a send is in flight wait for it, so they stay in order). One
// io_uring_submit_and_wait_timeout per loop iteration; setup flags SINGLE_ISSUER|DEFER_TASKRUN first,
// dropped step by step as corio does. Accepted sockets get TCP_NODELAY, as corio's do. Listens on
// 127.0.0.1:0, prints "PORT <port>" on stdout, serves until killed (SIGTERM) or --seconds S have passed
// (default 120).
//
// Usage: corio_bench_floor_w5_uring [--seconds S]
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "floor_uring.hpp"

namespace {

using namespace floor_uring;

constexpr std::string_view kResponse = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";

struct Conn {
  explicit Conn(int f) : fd(f) {}
  int fd;
  bool recv_armed = false;  // a multishot receive is in the ring
  bool sending = false;     // a send of `out` is in the ring
  bool closed = false;      // the peer closed (or reset): no new sends, freed once nothing is in the ring
  std::string in;           // bytes of an incomplete request
  std::string out;          // responses being sent (out_off.. not yet)
  std::size_t out_off = 0;
  std::string next;  // responses waiting for the send in flight
};

// user_data: 0 for the multishot accept, 2 for a cancel, else a Conn* with bit 0 set for a send.
constexpr std::uint64_t kAccept = 0;
constexpr std::uint64_t kCancel = 2;
std::uint64_t ud(Conn* c, bool send) { return reinterpret_cast<std::uintptr_t>(c) | (send ? 1u : 0u); }

io_uring ring;
io_uring_buf_ring* br;
char* bufs;
int to_advance = 0;

io_uring_sqe* get_sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring);
  if (!s) {  // the submission queue is full: submit it
    int rc = io_uring_submit(&ring);
    if (rc < 0) die_rc("io_uring_submit", rc);
    s = io_uring_get_sqe(&ring);
    if (!s) die("io_uring_get_sqe");
  }
  return s;
}
char* buf(int bid) { return bufs + static_cast<std::size_t>(bid) * kBufSize; }
void give_back(int bid) {
  io_uring_buf_ring_add(br, buf(bid), kBufSize, static_cast<unsigned short>(bid),
                        io_uring_buf_ring_mask(kBufCount), to_advance++);
}
void arm_accept(int lfd) {
  io_uring_sqe* s = get_sqe();
  io_uring_prep_multishot_accept(s, lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(s, kAccept);
}
void arm_recv(Conn* c) {
  io_uring_sqe* s = get_sqe();
  io_uring_prep_recv_multishot(s, c->fd, nullptr, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = kBufGroup;
  io_uring_sqe_set_data64(s, ud(c, false));
  c->recv_armed = true;
}
void send_out(Conn* c) {
  io_uring_sqe* s = get_sqe();
  io_uring_prep_send(s, c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, ud(c, true));
  c->sending = true;
}
void close_conn(Conn* c) {
  if (!c->closed) {
    c->closed = true;
    close(c->fd);  // a request still in the ring holds its own reference to the socket
    if (c->recv_armed) {
      io_uring_sqe* s = get_sqe();
      io_uring_prep_cancel64(s, ud(c, false), 0);
      io_uring_sqe_set_data64(s, kCancel);
    }
  }
  if (!c->recv_armed && !c->sending) delete c;
}

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

  const char* setup = setup_ring(ring);
  const BufferRing mapped = map_buffer_ring(ring);
  br = mapped.br;
  bufs = mapped.bufs;
  for (unsigned i = 0; i < kBufCount; ++i) give_back(static_cast<int>(i));
  io_uring_buf_ring_advance(br, to_advance);
  to_advance = 0;
  arm_accept(lfd);
  std::printf("PORT %u\n", static_cast<unsigned>(ntohs(addr.sin_port)));
  std::printf("SETUP %s\n", setup);
  std::fflush(stdout);

  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
  for (;;) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) break;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    __kernel_timespec ts{};
    ts.tv_sec = ns / 1'000'000'000;
    ts.tv_nsec = ns % 1'000'000'000;
    io_uring_cqe* first = nullptr;
    int rc = io_uring_submit_and_wait_timeout(&ring, &first, 1, &ts, nullptr);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
      die_rc("io_uring_submit_and_wait_timeout", rc);
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      const std::uint64_t data = io_uring_cqe_get_data64(cqe);
      const int res = cqe->res;
      const bool more = cqe->flags & IORING_CQE_F_MORE;
      if (data == kAccept) {
        if (res >= 0) {
          setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          arm_recv(new Conn(res));
        }
        if (!more) arm_accept(lfd);
        continue;
      }
      if (data == kCancel) continue;
      auto* c = reinterpret_cast<Conn*>(data & ~std::uint64_t{1});
      if (data & 1) {  // a send completed
        c->sending = false;
        if (c->closed || res < 0) {
          close_conn(c);
          continue;
        }
        c->out_off += static_cast<std::size_t>(res);
        if (c->out_off < c->out.size()) {
          send_out(c);  // short
        } else if (!c->next.empty()) {
          c->out.swap(c->next);
          c->next.clear();
          c->out_off = 0;
          send_out(c);
        }
        continue;
      }
      // the multishot receive
      if (!more) c->recv_armed = false;
      if (res == -ENOBUFS && !c->closed) {
        arm_recv(c);  // ended for want of buffers: ask again
        continue;
      }
      if (res <= 0 || c->closed) {
        if (res > 0) give_back(static_cast<int>(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
        close_conn(c);
        continue;
      }
      const int bid = static_cast<int>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
      std::string_view data_in(buf(bid), static_cast<std::size_t>(res));
      if (!c->in.empty()) {
        c->in.append(data_in);
        data_in = c->in;
      }
      std::string& out = c->sending ? c->next : c->out;
      if (!c->sending) {
        out.clear();
        c->out_off = 0;
      }
      std::size_t pos = 0;
      for (std::size_t at; (at = data_in.find("\r\n\r\n", pos)) != std::string_view::npos; pos = at + 4)
        out.append(kResponse);
      std::string rest(data_in.substr(pos));
      c->in.swap(rest);
      give_back(bid);
      if (!c->sending && !out.empty()) send_out(c);
      if (!c->recv_armed) arm_recv(c);
    }
    io_uring_cq_advance(&ring, seen);
    if (to_advance) io_uring_buf_ring_advance(br, to_advance);
    to_advance = 0;
  }
  return 0;
}
