// W4 floor on io_uring: the TCP echo workload of bench/floor_w4_epoll.cpp (one process, one thread, an
// echo server on 127.0.0.1 and C client connections, default 100, each doing N round trips of 64 bytes,
// TCP_NODELAY and O_NONBLOCK on both sides) with raw liburing and no runtime, in the design corio's
// io_uring backend uses:
// - one multishot receive per socket into a ring of provided buffers (1024 x 4 KiB, group 0), re-armed
//   when the kernel ends it (e.g. ENOBUFS);
// - every send is an IORING_OP_SEND; the server sends straight from the provided buffer and returns the
//   buffer to the ring when the send completes;
// - one io_uring_submit_and_wait(1) per loop iteration, then every completion is handled;
// - setup flags SINGLE_ISSUER|DEFER_TASKRUN first, dropped step by step as corio does, SQ 4096, CQ 16384.
// The timed part starts just before the clients' first sends are prepared and ends at the last reply
// (steady clock), as in the epoll floor.
//
// Usage: corio_bench_floor_w4_uring [N [C]]   (default N = 10,000, C = 100)
// Output: one line "RESULT workload=w4 impl=floor backend=io_uring setup=... n=... conns=... rt_per_s=...
// ns_per_rt=... user_ns_per_rt=... sys_ns_per_rt=..." (as bench/w4_echo.cpp)
#include <arpa/inet.h>
#include <fcntl.h>
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
#include <vector>

#include "cpu_time.hpp"
#include "floor_uring.hpp"

namespace {

using namespace floor_uring;

constexpr int kMsg = 64;

void setup_fd(int fd) {
  const int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) die("TCP_NODELAY");
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("O_NONBLOCK");
}

// user_data: connection index << 1 | (1 for a send, 0 for the multishot receive).
constexpr std::uint64_t ud(int conn, bool send) { return static_cast<std::uint64_t>(conn) << 1 | send; }

struct Pending {  // server: received bytes not yet sent, still in provided buffer bid
  int bid;
  int off;
  int len;
};

struct Conn {
  int fd = -1;
  bool is_client = false;
  bool rearm = false;  // the multishot receive ended: arm it again after this batch
  int got = 0;         // client: bytes of the current reply received
  int rounds = 0;      // client: replies received
  int sent = 0;        // client: bytes of the current request whose send completed
  // Server: what was received and not yet sent, in order; the front one is in flight. One entry at a
  // time in this workload; a queue only so that more data can never overtake a send in flight.
  std::vector<Pending> out;
};

struct Uring {
  io_uring ring{};
  io_uring_buf_ring* br = nullptr;
  char* bufs = nullptr;
  int to_advance = 0;

  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring);
    if (!s) {  // the submission queue is full (never with this workload's sizes): submit it
      int rc = io_uring_submit(&ring);
      if (rc < 0) die_rc("io_uring_submit", rc);
      s = io_uring_get_sqe(&ring);
      if (!s) die("io_uring_get_sqe");
    }
    return s;
  }
  char* buf(int bid) const { return bufs + static_cast<std::size_t>(bid) * kBufSize; }
  void give_back(int bid) {
    io_uring_buf_ring_add(br, buf(bid), kBufSize, static_cast<unsigned short>(bid),
                          io_uring_buf_ring_mask(kBufCount), to_advance++);
  }
  void publish_buffers() {  // one tail update per batch
    if (to_advance) io_uring_buf_ring_advance(br, to_advance);
    to_advance = 0;
  }
  void arm_recv(int conn, int fd) {
    io_uring_sqe* s = sqe();
    io_uring_prep_recv_multishot(s, fd, nullptr, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = kBufGroup;
    io_uring_sqe_set_data64(s, ud(conn, false));
  }
  void send(int conn, int fd, const char* p, int len) {
    io_uring_sqe* s = sqe();
    io_uring_prep_send(s, fd, p, static_cast<std::size_t>(len), 0);
    io_uring_sqe_set_data64(s, ud(conn, true));
  }
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

  Uring u;
  const char* setup = setup_ring(u.ring);
  const BufferRing mapped = map_buffer_ring(u.ring);
  u.br = mapped.br;
  u.bufs = mapped.bufs;
  for (unsigned i = 0; i < kBufCount; ++i) u.give_back(static_cast<int>(i));
  u.publish_buffers();

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
    u.arm_recv(2 * c, cfd);
    u.arm_recv(2 * c + 1, sfd);
  }
  close(lfd);
  if (int rc = io_uring_submit(&u.ring); rc < 0) die_rc("io_uring_submit", rc);

  char msg[kMsg];
  std::memset(msg, 'x', sizeof msg);
  const auto t0 = std::chrono::steady_clock::now();
  const corio_bench::CpuTime cpu0 = corio_bench::cpu_time();
  for (int c = 0; c < conns; ++c) u.send(2 * c, cs[static_cast<std::size_t>(2 * c)].fd, msg, kMsg);
  int done = 0;
  long bad = 0;
  std::vector<int> rearm;
  while (done < conns) {
    int rc = io_uring_submit_and_wait(&u.ring, 1);
    if (rc < 0) {
      if (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) continue;
      die_rc("io_uring_submit_and_wait", rc);
    }
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&u.ring, head, cqe) {
      ++seen;
      const std::uint64_t data = io_uring_cqe_get_data64(cqe);
      const int idx = static_cast<int>(data >> 1);
      Conn& c = cs[static_cast<std::size_t>(idx)];
      const int res = cqe->res;
      if (data & 1) {  // a send completed
        if (res < 0) die_rc(c.is_client ? "client send" : "server send", res);
        if (c.is_client) {
          c.sent += res;
          if (c.sent < kMsg) u.send(idx, c.fd, msg + c.sent, kMsg - c.sent);  // short (never on loopback)
          continue;
        }
        Pending& p = c.out.front();
        p.off += res;
        p.len -= res;
        if (p.len > 0) {
          u.send(idx, c.fd, u.buf(p.bid) + p.off, p.len);  // short (never on loopback)
          continue;
        }
        u.give_back(p.bid);
        c.out.erase(c.out.begin());
        if (!c.out.empty())
          u.send(idx, c.fd, u.buf(c.out.front().bid) + c.out.front().off, c.out.front().len);
        continue;
      }
      // the multishot receive
      if (!(cqe->flags & IORING_CQE_F_MORE) && !c.rearm && c.fd >= 0) {
        c.rearm = true;
        rearm.push_back(idx);
      }
      if (res == -ENOBUFS) continue;  // ended for want of buffers: re-armed after this batch
      if (res <= 0) {
        if (c.is_client && c.rounds == n) continue;
        die_rc(c.is_client ? "client recv" : "server recv", res == 0 ? -ECONNRESET : res);
      }
      const int bid = static_cast<int>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
      if (c.is_client) {
        const char* b = u.buf(bid);
        for (int j = 0; j < res; ++j) bad += b[j] != 'x';
        u.give_back(bid);
        c.got += res;
        if (c.got < kMsg) continue;
        c.got -= kMsg;
        if (++c.rounds == n) {
          ++done;
          continue;
        }
        c.sent = 0;
        u.send(idx, c.fd, msg, kMsg);
      } else {
        c.out.push_back(Pending{bid, 0, res});
        if (c.out.size() == 1) u.send(idx, c.fd, u.buf(bid), res);
      }
    }
    io_uring_cq_advance(&u.ring, seen);
    u.publish_buffers();
    for (int idx : rearm) {
      Conn& c = cs[static_cast<std::size_t>(idx)];
      c.rearm = false;
      u.arm_recv(idx, c.fd);
    }
    rearm.clear();
  }
  const auto t1 = std::chrono::steady_clock::now();
  const corio_bench::CpuTime cpu1 = corio_bench::cpu_time();
  for (Conn& c : cs) close(c.fd);
  io_uring_queue_exit(&u.ring);
  if (bad) {
    std::fprintf(stderr, "floor_w4_uring: %ld wrong bytes\n", bad);
    return 1;
  }
  const double s = std::chrono::duration<double>(t1 - t0).count();
  const double total = static_cast<double>(n) * conns;
  std::printf(
      "RESULT workload=w4 impl=floor backend=io_uring setup=%s n=%d conns=%d rt_per_s=%.0f ns_per_rt=%.1f "
      "user_ns_per_rt=%.1f sys_ns_per_rt=%.1f\n",
      setup, n, conns, total / s, s * 1e9 / total, (cpu1.user_s - cpu0.user_s) * 1e9 / total,
      (cpu1.sys_s - cpu0.sys_s) * 1e9 / total);
  return 0;
}
