// The io_uring backend: completion-style. Every operation of the seam is an io_uring request; nothing is
// tried first with a plain system call.
//
// - Stream receives (recv into the backend's buffer) use one multishot receive per socket, into a ring of
//   provided buffers shared by the loop. What arrives while nobody reads waits, in order, in the
//   descriptor's chunk queue; try_now() answers from it without any system call. A queue above 64 KiB
//   stops the multishot receive (the kernel's socket buffer and TCP's window then push back) until a
//   reader asks again. When the buffer ring is empty (ENOBUFS) the waiting reader gets a one-shot receive
//   into a buffer of its own, so progress never depends on other connections returning buffers.
// - Accepts use one multishot accept per listening socket, queued the same way (at most 64); a server with
//   an accept with kAcceptOnlyWhenAsked gets a one-shot accept instead, so that connections nobody asked
//   for stay in the kernel's backlog, as with epoll. (A server with a connection limit waits for its
//   listener to be readable and accepts at once: see server.cpp.)
// - Everything else (send, sendmsg, read, write, connect, recvmsg/sendmsg for datagrams, poll) is a
//   one-shot request whose user_data is the IoOp itself.
// - Submissions are batched: requests are prepared during a loop turn and submitted once, when the loop
//   polls; closing a descriptor (forget) cancels its requests by user_data in the same batch.
// - Cancellation is IORING_OP_ASYNC_CANCEL; the op, its buffers and the awaiting frame stay alive until
//   the request's own completion arrives (discard(), for an owner that cannot wait, waits for it here).
// - Completion-queue overflow: the ring is created with a completion queue 4x the submission queue and
//   the kernel keeps overflowed completions (IORING_FEAT_NODROP); reap() flushes them.
// - Cross-thread wake-up: an eventfd under a multishot poll (SINGLE_ISSUER forbids other threads from
//   submitting, so MSG_RING from a foreign thread is not an option).
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/log.hpp"
#include "signal_core.hpp"

namespace corio::detail {
namespace {

// Submission queue entries; the completion queue has 4x as many. CORIO_URING_ENTRIES overrides it (a
// power of two, 1..32768), e.g. small in tests that make the completion queue overflow on purpose.
unsigned sq_entries() noexcept {
  const char* v = std::getenv("CORIO_URING_ENTRIES");
  if (!v || !*v) return 4096;
  unsigned long n = std::strtoul(v, nullptr, 10);
  return n >= 1 && n <= 32768 ? static_cast<unsigned>(n) : 4096;
}
constexpr unsigned kBufCount = 1024;  // provided buffers (a power of two), kBufSize each
constexpr unsigned kBufSize = 4096;
constexpr unsigned kBufGroup = 0;
constexpr std::size_t kOwnBufMax = 64 * 1024;  // a one-shot receive's own buffer, at most
constexpr std::size_t kMaxQueuedBytes = 64 * 1024;
constexpr std::size_t kMaxQueuedAccepts = 64;
// The most one read or write request moves: an SQE's length is 32 bits, and Linux moves at most
// INT_MAX & PAGE_MASK bytes per call anyway (a longer send comes back short, and the caller goes on).
constexpr std::size_t kMaxIo = 0x7ffff000;

// IoOp::backend_state
constexpr std::uint8_t kIdle = 0;
constexpr std::uint8_t kDone = 1;        // on done_: completes on the next poll
constexpr std::uint8_t kWaiting = 2;     // in a descriptor's waiter list, fed by a multishot request
constexpr std::uint8_t kInRing = 3;      // a one-shot request in the ring
constexpr std::uint8_t kCancelling = 4;  // kInRing, and a cancel request was prepared

// user_data: an IoOp* (8-aligned: low bit 0) for one-shot requests; odd values are keys for the rest.
enum class Kind : std::uint64_t { recv = 0, accept = 1, wake = 2, signal = 3, ignore = 4 };
constexpr std::uint64_t key(Kind k, int fd = 0, std::uint32_t gen = 0) noexcept {
  return (std::uint64_t{gen & 0x0fffffffu} << 36) | (std::uint64_t{static_cast<std::uint32_t>(fd)} << 4) |
         (static_cast<std::uint64_t>(k) << 1) | 1u;
}
constexpr Kind key_kind(std::uint64_t k) noexcept { return static_cast<Kind>((k >> 1) & 7); }
constexpr int key_fd(std::uint64_t k) noexcept { return static_cast<int>((k >> 4) & 0xffffffffu); }
constexpr std::uint32_t key_gen(std::uint64_t k) noexcept { return static_cast<std::uint32_t>(k >> 36); }

// What a one-shot request needs beyond the IoOp, alive until its completion.
struct Extra {
  msghdr msg{};
  iovec iov{};
  std::unique_ptr<char[]> own;  // the receive buffer of a recv/read without one of its own
};

class UringBackend final : public SignalCore {
 public:
  // Returns null with err set when the kernel refuses io_uring (seccomp, io_uring_disabled, ENOSYS).
  static std::unique_ptr<UringBackend> create(int& err, std::string& flags_used) {
    auto ring = std::make_unique<io_uring>();
    // Optional setup flags dropped step by step until the kernel accepts (EINVAL: an unknown flag).
    struct Attempt {
      unsigned flags;
      const char* name;
    };
    const Attempt attempts[] = {
        {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "SINGLE_ISSUER|DEFER_TASKRUN"},
        {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN, "SINGLE_ISSUER|COOP_TASKRUN"},
        {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
        {0, "none"},
    };
    int rc = -EINVAL;
    bool single_issuer = false;
    for (const Attempt& a : attempts) {
      io_uring_params p{};
      p.flags = a.flags | IORING_SETUP_CQSIZE;
      p.cq_entries = 4 * sq_entries();
      rc = io_uring_queue_init_params(sq_entries(), ring.get(), &p);
      if (rc == 0) {
        flags_used = a.name;
        single_issuer = (a.flags & IORING_SETUP_SINGLE_ISSUER) != 0;
        break;
      }
      if (rc != -EINVAL) break;
    }
    if (rc < 0) {
      err = -rc;
      return nullptr;
    }
    int wakefd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wakefd < 0) {
      err = errno;
      io_uring_queue_exit(ring.get());
      return nullptr;
    }
    return std::make_unique<UringBackend>(std::move(ring), wakefd, single_issuer);
  }

  UringBackend(std::unique_ptr<io_uring> ring, int wakefd, bool single_issuer) noexcept
      : SignalCore(wakefd), ring_(std::move(ring)), single_issuer_(single_issuer) {
    setup_buffers();
    arm_poll_multishot(wakefd_, key(Kind::wake));
  }

  ~UringBackend() override {
    abandon();
    io_uring_queue_exit(ring_.get());
    if (br_) ::munmap(br_, br_bytes());
    if (bufs_) ::munmap(bufs_, std::size_t{kBufCount} * kBufSize);
    close_signals_and_wakefd();
  }

  Backend backend() const noexcept override { return Backend::io_uring; }

  // With SINGLE_ISSUER only the thread that made the ring may submit to it or reap it (the kernel says
  // EEXIST to any other). Say so plainly when the loop is run elsewhere. (Binding the ring to the first
  // thread that runs it instead, with R_DISABLED, was tried: a loop run on a worker and destroyed on the
  // thread that made it, with a request in flight, could then not wait for that request's completion.)
  void attach_thread() override {
    if (single_issuer_ && owner_ != std::this_thread::get_id())
      throw RuntimeError(
          "this event loop uses io_uring, whose ring serves only the thread that created the loop "
          "(IORING_SETUP_SINGLE_ISSUER): create the loop on the thread that runs it, or use the epoll "
          "backend (RunOptions.backend or CORIO_BACKEND=epoll)");
  }
  std::size_t pending() const noexcept override { return pending_; }

  // Only a receive or an accept can finish now (from what a multishot request delivered): every write
  // calls this, so the answer for the rest costs a compare, and the work is out of line.
  bool try_now(IoOp& op) override {
    if (op.code != OpCode::recv && op.code != OpCode::accept) return false;  // (sends go to the ring)
    return try_now_delivered(op);
  }
  [[gnu::noinline]] bool try_now_delivered(IoOp& op) {
    FdState* st = state_if(op.fd);
    if (!st) return false;
    if (op.code == OpCode::recv && op.flags == 0 && st->has_chunks()) {
      int bid = take_chunk(*st, op);
      if (bid >= 0) later_release_.push_back(bid);  // the caller reads op.data after we return
      return true;
    }
    if (op.code == OpCode::accept) {
      // Accepts the kernel has posted but the loop has not reaped yet count as held (Server::close() takes
      // what was accepted before it closes the listener): the posted completions move to deferred_, and
      // this listener's accepts among them are handled now, with those already in deferred_.
      if (st->accepted_head == st->accepted.size() && st->accept_armed &&
          (io_uring_cq_ready(ring_.get()) > 0 || !deferred_.empty()))
        take_posted_accepts(op.fd);
      st = state_if(op.fd);
      if (st && st->accepted_head < st->accepted.size()) {
        take_accepted(*st, op);
        return true;
      }
    }
    return false;
  }

  // Handles fd's accept completions now: those posted and those already in deferred_ (taken out of the
  // ring early by another listener's try_now, a discard's wait, a full ring), all in the kernel's order.
  // deferred_ holds completions in arrival order, so scanning it whole keeps the connections in order.
  void take_posted_accepts(int fd) {
    take_posted();
    std::vector<Cqe> mine;
    auto is_mine = [&](const Cqe& c) {
      return (c.user_data & 1) != 0 && key_kind(c.user_data) == Kind::accept && key_fd(c.user_data) == fd;
    };
    for (const Cqe& c : deferred_)
      if (is_mine(c)) mine.push_back(c);
    if (mine.empty()) return;
    deferred_.erase(std::remove_if(deferred_.begin(), deferred_.end(), is_mine), deferred_.end());
    for (const Cqe& c : mine) on_accept(c);
  }

  void submit(IoOp& op) override {
    op.pending = true;
    ++pending_;
    // A stream's write, the common case, straight to the ring; the rest out of line.
    if (op.code == OpCode::send) {
      prep_one_shot(op);
      return;
    }
    submit_other(op);
  }
  [[gnu::noinline]] void submit_other(IoOp& op) {
    if (op.code == OpCode::recv && op.flags == 0 && op.buf == nullptr && buffer_ring_) {
      FdState& st = state(op.fd);
      if (st.has_chunks()) {  // (submitted without try_now)
        int bid = take_chunk(st, op);
        if (bid >= 0) later_release_.push_back(bid);
        to_done(op);
        return;
      }
      op.backend_state = kWaiting;
      st.recv_waiters.push_back(op);
      start_recv(op.fd, st);
      return;
    }
    if (op.code == OpCode::accept && !(op.flags & kAcceptOnlyWhenAsked)) {
      FdState& st = state(op.fd);
      if (st.accepted_head < st.accepted.size()) {
        take_accepted(st, op);
        to_done(op);
        return;
      }
      op.backend_state = kWaiting;
      st.accept_waiters.push_back(op);
      start_accept(op.fd, st);
      return;
    }
    prep_one_shot(op);
  }

  void cancel(IoOp& op) noexcept override {
    if (!op.pending) return;
    if (op.backend_state == kWaiting) {
      op.unlink();
      op.result = -ECANCELED;
      to_done(op);
    } else if (op.backend_state == kInRing) {
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel64(sqe, reinterpret_cast<std::uintptr_t>(&op), 0);
      io_uring_sqe_set_data64(sqe, key(Kind::ignore));
      op.backend_state = kCancelling;
    }
  }

  // Cancels every request on fd by its user_data (a hashed lookup; cancelling by descriptor walks every
  // request in flight, which made closing 10,000 connections quadratic), and submits the cancels at once,
  // letting the kernel run their work: a request in flight holds the file, so until then the caller's
  // close() would not close the socket (a closed server's port stayed bound and took connections; a
  // closed stream's FIN waited for the loop's next turn), as it does at once on epoll. The requests' late
  // completions carry an old generation (or are the ops' own), so the number may be reused at once.
  void forget(int fd) noexcept override {
    FdState* st = state_if(fd);
    if (!st) return;
    while (IoOp* op = st->recv_waiters.front()) cancel(*op);
    while (IoOp* op = st->accept_waiters.front()) cancel(*op);
    drop_queued(*st);
    st->in_ring.for_each([&](IoOp& op) {
      if (op.backend_state == kInRing) cancel(op);
    });
    if (st->recv_armed) stop_multishot(key(Kind::recv, fd, st->gen), st->stopping_recv);
    if (st->accept_armed) stop_multishot(key(Kind::accept, fd, st->gen), st->stopping_accept);
    st->recv_armed = st->accept_armed = st->stopping_recv = st->stopping_accept = st->nobufs = false;
    ++st->gen;
    // A request naming fd that is still only prepared would run, at the next submission, on whatever file
    // then has that number: the caller closes fd next, and the number may be reused at once (by this
    // thread, by another, or by a multishot accept). It goes now, while fd is still this file; the cancels
    // above follow it in the same submission. (From a thread the ring does not serve, the kernel refuses
    // to run task work: the cancels then go with the owner's next submission.)
    if (single_issuer_ && owner_ != std::this_thread::get_id()) {
      if (prepared_ && st->prep_epoch == epoch_) submit_now();
      return;
    }
    flush();
  }

  void flush() noexcept override {
    if (!prepared_) return;
    // Submit and let the kernel run the cancels' work (deferred to the next wait with DEFER_TASKRUN), so
    // the requests drop their hold on the file before it is closed. Their completions wait in the ring
    // (or are dropped with it). From a thread the ring does not serve, the kernel refuses: nothing to do.
    if (single_issuer_ && owner_ != std::this_thread::get_id()) return;
    submit_now(/*run_task_work=*/true);
  }

  void discard(IoOp& op) noexcept override {
    if (!op.pending) return;
    if (op.backend_state == kInRing || op.backend_state == kCancelling) {
      // The kernel may still write into the op's memory: cancel, and wait for its completion here.
      if (op.backend_state == kInRing) cancel(op);
      const bool accept = op.code == OpCode::accept;
      const std::optional<int> res = wait_for_completion(reinterpret_cast<std::uintptr_t>(&op), accept);
      // An accept that raced to success: nobody will take that connection (reset, never leaked).
      if (accept && res && *res >= 0) abort_accepted(*res);
      op.unlink();  // from its descriptor's in_ring
      delete static_cast<Extra*>(op.backend_data);
      op.backend_data = nullptr;
      --inflight_;
    } else {
      op.unlink();  // from a waiter list or from done_
    }
    op.pending = false;
    op.backend_state = kIdle;
    --pending_;
  }

  std::size_t poll(std::int64_t timeout_ns) override {
    // A busy loop with no I/O (tasks handing work to each other) polls every turn: with nothing prepared,
    // in flight or left over, only a wake-up (cross-thread posts are seen through the loop's flag) or a
    // signal could be waiting. Return without touching the ring, except on every 256th busy turn when
    // signals are watched, as the epoll backend does. The rest is out of line, so that such a turn costs a
    // few instructions.
    const bool signal_turn = timeout_ns == 0 && sigfd_ >= 0 && (++busy_polls_ & 255) == 0;
    if (timeout_ns == 0 && !prepared_ && inflight_ == 0 && !signal_turn && done_.empty() &&
        deferred_.empty() && later_release_.empty())
      return 0;
    return poll_slow(timeout_ns, signal_turn);
  }

 private:
  [[gnu::noinline]] std::size_t poll_slow(std::int64_t timeout_ns, bool signal_turn) {
    while (!off_thread_sqes_.empty()) {  // (prepared off the ring's thread while its queue was full)
      const io_uring_sqe saved = off_thread_sqes_.front();
      off_thread_sqes_.pop_front();
      *get_sqe() = saved;
    }
    std::size_t handled = run_deferred() + finish_done();  // (done_ ops may still read their op.data)
    release_later_buffers();
    if (handled) timeout_ns = 0;
    int rc = 0;
    if (timeout_ns == 0) {
      if (prepared_ || inflight_ > 0 || signal_turn) rc = io_uring_submit_and_get_events(ring_.get());
    } else if (timeout_ns < 0) {
      rc = io_uring_submit_and_wait(ring_.get(), 1);
    } else {
      __kernel_timespec ts{};
      ts.tv_sec = timeout_ns / 1'000'000'000;
      ts.tv_nsec = timeout_ns % 1'000'000'000;
      io_uring_cqe* cqe = nullptr;
      rc = io_uring_submit_and_wait_timeout(ring_.get(), &cqe, 1, &ts, nullptr);
    }
    prepared_ = false;
    if (rc != -EBUSY && rc != -EAGAIN) ++epoch_;  // (what was prepared went in)
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
      throw std::system_error(-rc, std::generic_category(), "io_uring_enter");
    handled += reap();
    release_later_buffers();
    return handled;
  }

 protected:
  void watch_signals(int sigfd) override { arm_poll_multishot(sigfd, key(Kind::signal)); }

 private:
  struct Cqe {
    std::uint64_t user_data;
    std::int32_t res;
    std::uint32_t flags;
  };
  // Data a multishot receive delivered and nobody has read yet. bid < 0: no data; res is what a reader
  // gets (0 for EOF, or -errno).
  struct Chunk {
    int bid;
    std::uint32_t off;
    std::uint32_t len;
    int res;
  };
  // What a receive touches comes first, in one cache line (with 100s of connections each descriptor's
  // state is out of the L1 cache whenever it is used); accept's part of it only listening sockets use.
  struct alignas(64) FdState {
    std::uint32_t gen = 0;         // bumped by forget(): completions of an older generation only clean up
    std::uint32_t chunk_head = 0;  // chunks[chunk_head..] not read yet
    bool recv_armed = false;       // a multishot receive is in the ring (until its last completion)
    bool accept_armed = false;
    bool stopping_recv = false;  // a cancel of that request is on its way (queue over the limit)
    bool stopping_accept = false;
    bool nobufs = false;                 // the last multishot receive ended for want of buffers
    std::uint8_t prep_epoch = 0;         // epoch_ when a request naming fd was last prepared
    IntrusiveList<IoOp> recv_waiters;    // fed by the multishot receive, in order
    IntrusiveList<IoOp> in_ring;         // one-shot requests in the ring (until their completions arrive)
    std::vector<Chunk> chunks;           // received, not read yet (from chunk_head)
    std::size_t queued = 0;              // bytes in chunks
    IntrusiveList<IoOp> accept_waiters;  // fed by the multishot accept
    std::vector<int> accepted;           // accepted[accepted_head..]: descriptors (or -errno) not taken yet
    std::size_t accepted_head = 0;

    bool has_chunks() const noexcept { return chunk_head < chunks.size(); }
  };

  // ---- descriptors

  // The states live in pages of kPageStates, one page made on the first use of any descriptor in it and
  // kept until the backend goes (so a state never moves). A state per allocation cost more: each is aligned
  // to a cache line, and malloc kept the padding of every aligned allocation as free space (bench's idle
  // connections went from 1,604 to 1,557 B per connection with pages). A state in a page whose descriptor
  // was never used is an empty one, as a new state is.
  static constexpr unsigned kPageShift = 6;
  static constexpr std::size_t kPageStates = std::size_t{1} << kPageShift;
  FdState* state_if(int fd) noexcept {
    if (fd < 0) return nullptr;
    std::size_t page = static_cast<std::size_t>(fd) >> kPageShift;
    if (page >= pages_.size() || !pages_[page]) return nullptr;
    return &pages_[page][static_cast<std::size_t>(fd) & (kPageStates - 1)];
  }
  FdState& state(int fd) {
    if (FdState* st = state_if(fd)) return *st;
    return new_state(fd);
  }
  [[gnu::noinline]] FdState& new_state(int fd) {
    std::size_t page = static_cast<std::size_t>(fd) >> kPageShift;
    if (page >= pages_.size()) pages_.resize(std::max<std::size_t>(page + 1, pages_.size() * 2));
    if (!pages_[page]) pages_[page] = std::make_unique<FdState[]>(kPageStates);
    return *state_if(fd);
  }
  template <class F>
  void for_each_state(F f) {
    for (auto& page : pages_)
      if (page)
        for (std::size_t i = 0; i < kPageStates; ++i) f(page[i]);
  }

  void drop_queued(FdState& st) noexcept {
    for (std::size_t i = st.chunk_head; i < st.chunks.size(); ++i)
      if (st.chunks[i].bid >= 0) release_buffer(st.chunks[i].bid);
    st.chunks.clear();
    st.chunk_head = 0;
    st.queued = 0;
    for (std::size_t i = st.accepted_head; i < st.accepted.size(); ++i)
      abort_accepted(st.accepted[i]);  // (a queued error is < 0: nothing to close)
    st.accepted.clear();
    st.accepted_head = 0;
  }

  // Gives op (a recv) the head of st's queue: up to op.len bytes (all of the chunk when op.len is 0),
  // copied into op.buf or pointed to by op.data. Returns the buffer id to release once op.data has been
  // read, or -1.
  // Received bytes [p, p + n) for a recv op: copied into its own buffer, or pointed at (valid in complete()).
  static void give(IoOp& op, const char* p, std::size_t n) noexcept {
    if (op.buf) {
      std::memcpy(op.buf, p, n);
      op.data = nullptr;
    } else {
      op.data = p;
    }
    op.result = static_cast<std::int32_t>(n);
  }

  int take_chunk(FdState& st, IoOp& op) noexcept {
    Chunk& c = st.chunks[st.chunk_head];
    if (c.bid < 0) {
      op.result = c.res;
      op.data = nullptr;
      pop_chunk(st);
      return -1;
    }
    std::size_t n = c.len - c.off;
    if (op.len) n = std::min(n, op.len);
    give(op, buf_addr(c.bid) + c.off, n);
    c.off += static_cast<std::uint32_t>(n);
    st.queued -= n;
    if (c.off < c.len) return -1;
    int bid = c.bid;
    pop_chunk(st);
    return bid;
  }
  static void pop_chunk(FdState& st) noexcept {
    if (++st.chunk_head == st.chunks.size()) {
      st.chunks.clear();
      st.chunk_head = 0;
    }
  }

  void take_accepted(FdState& st, IoOp& op) noexcept {
    int fd = st.accepted[st.accepted_head];
    if (++st.accepted_head == st.accepted.size()) {
      st.accepted.clear();
      st.accepted_head = 0;
    }
    op.result = fd;
    if (fd >= 0 && op.addr) {
      socklen_t len = op.addrlen;
      if (::getpeername(fd, op.addr, &len) == 0)
        op.addrlen = len;
      else
        op.addrlen = 0;
    }
  }

  // ---- requests

  io_uring_sqe* get_sqe() noexcept {
    prepared_ = true;
    if (io_uring_sqe* sqe = io_uring_get_sqe(ring_.get())) return sqe;
    return get_sqe_full();
  }
  [[gnu::noinline]] io_uring_sqe* get_sqe_full() noexcept {
    // From a thread the ring does not serve (SINGLE_ISSUER) nothing can be submitted (EEXIST), so waiting for
    // room would spin for ever: keep the request aside; the owner's next poll puts it in the ring.
    if (single_issuer_ && owner_ != std::this_thread::get_id()) return &off_thread_sqes_.emplace_back();
    io_uring_sqe* sqe = nullptr;
    while (!sqe) {
      // The submission queue is full: submit it.
      submit_now();
      sqe = io_uring_get_sqe(ring_.get());
    }
    return sqe;
  }

  // Submits what is prepared, now (and with run_task_work, lets the kernel run the work it deferred to
  // the next wait: DEFER_TASKRUN). The kernel refuses (EBUSY) while completions it could not post are
  // waiting: take those into deferred_ (handled on the next poll) and try again.
  void submit_now(bool run_task_work = false) noexcept {
    int rc;
    while ((rc = run_task_work ? io_uring_submit_and_get_events(ring_.get())
                               : io_uring_submit(ring_.get())) == -EBUSY)
      stash_completions();
    if (rc != -EAGAIN) ++epoch_;
  }

  // Takes the completion of user_data out of the ring (or of deferred_), keeping every other completion
  // that arrives meanwhile in deferred_ for the next poll. Returns its result; none when the completion is
  // not there and cannot be waited for (below): it is then dropped when it comes (accept: its connection
  // reset).
  std::optional<int> wait_for_completion(std::uint64_t user_data, bool accept = false) noexcept {
    auto early = [&]() -> std::optional<int> {
      auto it = std::find_if(deferred_.begin(), deferred_.end(),
                             [&](const Cqe& c) { return c.user_data == user_data; });
      if (it == deferred_.end()) return std::nullopt;
      const int res = it->res;
      deferred_.erase(it);
      return res;
    };
    if (single_issuer_ && owner_ != std::this_thread::get_id()) {
      // The loop is closed on a thread the ring does not serve (SINGLE_ISSUER): nothing can be submitted or
      // reaped from here, so waiting would never end (it spun for ever). What the kernel has posted is
      // read (no system call); otherwise the op is dropped unwaited, and its completion, if one comes
      // (the ring's teardown reaps), is ignored: the op's memory is gone. With DEFER_TASKRUN (set with
      // SINGLE_ISSUER on Linux >= 6.1) its data would only be copied in the owner's io_uring_enter, which
      // will not come, and the ring's teardown cancels that work without running it; on 6.0 (COOP_TASKRUN)
      // a receive completing in the same instant could still be copied by the owner.
      take_posted();
      if (std::optional<int> res = early()) return res;
      dropped_.push_back(Dropped{user_data, accept});
      return std::nullopt;
    }
    if (std::optional<int> res = early()) return res;
    for (;;) {
      if (io_uring_submit_and_wait(ring_.get(), 1) >= 0) ++epoch_;
      io_uring_cqe* cqe = nullptr;
      while (io_uring_peek_cqe(ring_.get(), &cqe) == 0 && cqe) {
        Cqe c{cqe->user_data, cqe->res, cqe->flags};
        io_uring_cqe_seen(ring_.get(), cqe);
        if (c.user_data == user_data) return c.res;
        deferred_.push_back(c);
      }
    }
  }

  // Moves the completions the kernel has posted into deferred_ (no system call), in order.
  void take_posted() noexcept {
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(ring_.get(), &cqe) == 0 && cqe) {
      deferred_.push_back(Cqe{cqe->user_data, cqe->res, cqe->flags});
      io_uring_cqe_seen(ring_.get(), cqe);
    }
  }

  // Lets the kernel post what it kept aside, then takes every posted completion into deferred_.
  void stash_completions() noexcept {
    io_uring_get_events(ring_.get());
    take_posted();
  }

  void arm_poll_multishot(int fd, std::uint64_t k) noexcept {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_poll_multishot(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, k);
  }

  // A reader waits on fd: make sure a multishot receive feeds it (or, after ENOBUFS, a one-shot receive
  // into the reader's own buffer).
  void start_recv(int fd, FdState& st) noexcept {
    if (st.recv_armed) return;
    if (st.nobufs) {
      st.nobufs = false;
      IoOp* op = st.recv_waiters.pop_front();
      if (op) prep_one_shot(*op);
      return;
    }
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufGroup;
    io_uring_sqe_set_data64(sqe, key(Kind::recv, fd, st.gen));
    st.recv_armed = true;
    st.prep_epoch = epoch_;
    ++inflight_;
  }

  void start_accept(int fd, FdState& st) noexcept {
    if (st.accept_armed) return;
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, key(Kind::accept, fd, st.gen));
    st.accept_armed = true;
    st.prep_epoch = epoch_;
    ++inflight_;
  }

  // The queue is over its limit: stop the multishot request until a reader asks again.
  void stop_multishot(std::uint64_t k, bool& stopping) noexcept {
    if (stopping) return;
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, k, 0);
    io_uring_sqe_set_data64(sqe, key(Kind::ignore));
    stopping = true;
  }

  void prep_one_shot(IoOp& op) noexcept {
    io_uring_sqe* sqe = get_sqe();
    Extra* x = nullptr;
    auto extra = [&]() -> Extra& {
      x = new Extra();
      return *x;
    };
    switch (op.code) {
      case OpCode::recv:
      case OpCode::read: {
        void* buf = op.buf;
        std::size_t len = std::min(op.len, kMaxIo);
        if (!buf) {
          len = std::min(len ? len : kOwnBufMax, kOwnBufMax);
          extra().own.reset(new char[len]);
          buf = x->own.get();
        }
        if (op.code == OpCode::recv)
          io_uring_prep_recv(sqe, op.fd, buf, len, op.flags);
        else
          io_uring_prep_read(sqe, op.fd, buf, static_cast<unsigned>(len), static_cast<std::uint64_t>(-1));
        break;
      }
      case OpCode::send:
        io_uring_prep_send(sqe, op.fd, op.buf, std::min(op.len, kMaxIo), op.flags | MSG_NOSIGNAL);
        break;
      case OpCode::write:
        io_uring_prep_write(sqe, op.fd, op.buf, static_cast<unsigned>(std::min(op.len, kMaxIo)),
                            static_cast<std::uint64_t>(-1));
        break;
      case OpCode::sendv: {
        Extra& e = extra();
        e.msg.msg_iov = const_cast<iovec*>(op.iov);
        e.msg.msg_iovlen = static_cast<std::size_t>(op.iovcnt);
        io_uring_prep_sendmsg(sqe, op.fd, &e.msg, MSG_NOSIGNAL);
        break;
      }
      case OpCode::recvfrom:
      case OpCode::sendto: {
        Extra& e = extra();
        e.iov = {op.buf, op.len};
        e.msg.msg_iov = &e.iov;
        e.msg.msg_iovlen = 1;
        e.msg.msg_name = op.addr;
        e.msg.msg_namelen = op.addr ? op.addrlen : 0;
        if (op.code == OpCode::recvfrom)
          io_uring_prep_recvmsg(sqe, op.fd, &e.msg, op.flags);
        else
          io_uring_prep_sendmsg(sqe, op.fd, &e.msg, op.flags | MSG_NOSIGNAL);
        break;
      }
      case OpCode::accept:  // (kAcceptOnlyWhenAsked)
        io_uring_prep_accept(sqe, op.fd, op.addr, op.addr ? &op.addrlen : nullptr,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
        break;
      case OpCode::connect:
        io_uring_prep_connect(sqe, op.fd, op.addr, op.addrlen);
        break;
      case OpCode::poll_in:
        io_uring_prep_poll_add(sqe, op.fd, POLLIN);
        break;
      case OpCode::poll_out:
        io_uring_prep_poll_add(sqe, op.fd, POLLOUT);
        break;
    }
    io_uring_sqe_set_data(sqe, &op);
    op.backend_data = x;
    op.backend_state = kInRing;
    FdState& st = state(op.fd);
    st.in_ring.push_back(op);
    st.prep_epoch = epoch_;
    ++inflight_;
  }

  // ---- completions

  void to_done(IoOp& op) noexcept {
    op.backend_state = kDone;
    done_.push_back(op);
  }

  // Marks op finished and runs its completion (which only enqueues, or reads op.data at once; it may
  // destroy op's owner, so op is not touched afterwards).
  static void finish(IoOp& op) {
    op.pending = false;
    op.backend_state = kIdle;
    op.complete();
  }

  std::size_t finish_done() {
    std::size_t n = 0;
    while (IoOp* op = done_.pop_front()) {
      --pending_;
      ++n;
      finish(*op);
    }
    return n;
  }

  std::size_t run_deferred() {
    if (deferred_.empty()) return 0;
    std::vector<Cqe> cqes;
    cqes.swap(deferred_);
    std::size_t n = 0;
    for (const Cqe& c : cqes) n += handle(c);
    return n;
  }

  std::size_t reap() {
    std::size_t n = 0;
    io_uring_cqe* cqe = nullptr;
    for (;;) {
      // Handling may prepare requests or even wait for one (discard): take one completion at a time.
      while (io_uring_peek_cqe(ring_.get(), &cqe) == 0 && cqe) {
        Cqe c{cqe->user_data, cqe->res, cqe->flags};
        io_uring_cqe_seen(ring_.get(), cqe);
        n += handle(c);
        // A handler that found the submission queue full may have taken every completion posted so far
        // into deferred_ (submit_now, on EBUSY): they are older than any the ring gets from now on, so they
        // are handled first (else a multishot receive's later chunk could be delivered before an earlier).
        while (!deferred_.empty()) n += run_deferred();
      }
      if (!io_uring_cq_has_overflow(ring_.get())) return n;
      io_uring_get_events(ring_.get());  // completions the kernel kept aside (IORING_FEAT_NODROP)
    }
  }

  std::size_t handle(const Cqe& c) {
    if ((c.user_data & 1) == 0) {
      if (!dropped_.empty() && drop_if_dropped(c)) return 0;
      auto* op = reinterpret_cast<IoOp*>(static_cast<std::uintptr_t>(c.user_data));
      return on_one_shot(*op, c.res);
    }
    switch (key_kind(c.user_data)) {
      case Kind::recv:
        return on_recv(c);
      case Kind::accept:
        return on_accept(c);
      case Kind::wake:
        drain_wakefd();
        if (!(c.flags & IORING_CQE_F_MORE) && !closing_) arm_poll_multishot(wakefd_, key(Kind::wake));
        return 0;
      case Kind::signal:
        if (!(c.flags & IORING_CQE_F_MORE) && !closing_ && sigfd_ >= 0)
          arm_poll_multishot(sigfd_, key(Kind::signal));
        return sigfd_ >= 0 ? read_signals() : 0;
      case Kind::ignore:
        return 0;
    }
    return 0;
  }

  // The completion of an op discarded without its completion (wait_for_completion off the ring's thread):
  // its memory is gone; an accepted connection is reset.
  bool drop_if_dropped(const Cqe& c) noexcept {
    auto it = std::find_if(dropped_.begin(), dropped_.end(),
                           [&](const Dropped& d) { return d.user_data == c.user_data; });
    if (it == dropped_.end()) return false;
    if (it->accept && c.res >= 0) abort_accepted(c.res);
    dropped_.erase(it);
    return true;
  }

  // Returns how many operations finished: 0 when the op was submitted again.
  std::size_t on_one_shot(IoOp& op, int res) {
    op.unlink();  // from its descriptor's in_ring
    --inflight_;
    auto* x = static_cast<Extra*>(op.backend_data);
    op.backend_data = nullptr;
    std::unique_ptr<Extra> keep(x);  // freed after complete() has read op.data
    if (res == -EINTR && op.backend_state == kInRing && op.code != OpCode::connect) [[unlikely]] {
      // A blocking attempt in the kernel's worker was interrupted by a signal to this process (a stop and
      // continue: job control, a cgroup freezer) before it moved a byte: nothing happened, so it goes again,
      // as the epoll backend's non-blocking calls never see EINTR. Not an op being cancelled (kCancelling:
      // the kernel interrupts a worker to cancel its work, which may end in EINTR too; its descriptor may
      // be about to close), nor a connect, which goes on by itself.
      prep_one_shot(op);
      return 0;
    }
    --pending_;
    op.result = res;
    switch (op.code) {
      case OpCode::poll_in:
      case OpCode::poll_out:
        if (res > 0) op.result = 0;  // the revents: readiness, as the seam reports it
        break;
      case OpCode::recv:
      case OpCode::read:
        op.data = x && x->own ? x->own.get() : nullptr;
        break;
      case OpCode::recvfrom:
        if (res >= 0 && op.addr) op.addrlen = x->msg.msg_namelen;
        break;
      case OpCode::send:
      case OpCode::sendv:
      case OpCode::write:
        if (res == -EPIPE || res == -ECONNRESET) {
          if (is_unix_socket(op.fd)) {
            // A Unix stream socket whose peer went with data unread: send() says EPIPE (as on epoll, and
            // in asyncio), but the ring's send, retried when the socket polled ready with that error,
            // reports the socket's error (ECONNRESET), as a receive would.
            op.result = -EPIPE;
          } else if (res == -EPIPE) {
            // EPIPE because the multishot receive, armed with nobody reading, took the socket's error (a
            // TCP reset) first: the send gets that error, as it would have from the kernel (and does on
            // epoll).
            op.result = queued_error(op.fd, res);
          }
        }
        break;
      default:
        break;
    }
    finish(op);
    return 1;
  }

  static bool is_unix_socket(int fd) noexcept {
    int domain = 0;
    socklen_t len = sizeof domain;
    return ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX;
  }

  // The error a receive delivered to fd's queue and nobody has read yet, else dflt.
  int queued_error(int fd, int dflt) noexcept {
    FdState* st = state_if(fd);
    if (!st) return dflt;
    for (std::size_t i = st->chunk_head; i < st->chunks.size(); ++i)
      if (st->chunks[i].bid < 0 && st->chunks[i].res < 0) return st->chunks[i].res;
    return dflt;
  }

  std::size_t on_recv(const Cqe& c) {
    bool more = c.flags & IORING_CQE_F_MORE;
    if (!more) --inflight_;
    int bid = (c.flags & IORING_CQE_F_BUFFER) ? static_cast<int>(c.flags >> IORING_CQE_BUFFER_SHIFT) : -1;
    int fd = key_fd(c.user_data);
    std::uint32_t gen = key_gen(c.user_data);
    FdState* st = state_if(fd);
    if (!st || (st->gen & 0x0fffffffu) != gen) {  // the descriptor was closed since
      if (bid >= 0) release_buffer(bid);
      return 0;
    }
    if (!more) st->recv_armed = st->stopping_recv = false;
    IoOp* first = st->recv_waiters.front();
    if (c.res > 0 && bid >= 0 && first && !st->has_chunks() &&
        (first->len == 0 || first->len >= static_cast<std::size_t>(c.res))) {
      // The usual case, a reader waiting on an empty queue: it takes the whole buffer, no queueing.
      first->unlink();
      give(*first, buf_addr(bid), static_cast<std::size_t>(c.res));
      --pending_;
      finish(*first);
      release_buffer(bid);
      rearm_recv(fd, gen);
      return 1;
    }
    if (c.res > 0 && bid >= 0) {
      st->chunks.push_back(Chunk{bid, 0, static_cast<std::uint32_t>(c.res), 0});
      st->queued += static_cast<std::size_t>(c.res);
    } else {
      if (bid >= 0) release_buffer(bid);
      if (c.res == -ENOBUFS)
        st->nobufs = true;
      else if (c.res != -ECANCELED)  // (ECANCELED: stopped by us, over the limit)
        st->chunks.push_back(Chunk{-1, 0, 0, c.res});
    }
    std::size_t n = 0;
    // Serve waiting readers; a completion may close fd (forget) or read again, so look fd up each time.
    for (;;) {
      st = state_if(fd);
      if (!st || (st->gen & 0x0fffffffu) != gen || !st->has_chunks()) break;
      IoOp* op = st->recv_waiters.pop_front();
      if (!op) break;
      int done_bid = take_chunk(*st, *op);
      --pending_;
      ++n;
      finish(*op);
      if (done_bid >= 0) release_buffer(done_bid);
    }
    rearm_recv(fd, gen);
    return n;
  }

  // After a receive completion was handled (which may have closed fd or read again): a multishot receive
  // for the readers still waiting, or none while the queue is over its limit.
  void rearm_recv(int fd, std::uint32_t gen) noexcept {
    FdState* st = state_if(fd);
    if (!st || (st->gen & 0x0fffffffu) != gen) return;
    if (!st->recv_armed && !st->recv_waiters.empty())
      start_recv(fd, *st);
    else if (st->recv_armed && st->has_chunks() && st->queued > kMaxQueuedBytes)
      stop_multishot(key(Kind::recv, fd, st->gen), st->stopping_recv);
  }

  std::size_t on_accept(const Cqe& c) {
    bool more = c.flags & IORING_CQE_F_MORE;
    if (!more) --inflight_;
    int fd = key_fd(c.user_data);
    std::uint32_t gen = key_gen(c.user_data);
    FdState* st = state_if(fd);
    if (!st || (st->gen & 0x0fffffffu) != gen) {
      abort_accepted(c.res);  // accepted after the listener was closed: nobody serves it
      return 0;
    }
    if (!more) st->accept_armed = st->stopping_accept = false;
    if (c.res != -ECANCELED) st->accepted.push_back(c.res);  // a descriptor, or an error such as -EMFILE
    std::size_t n = 0;
    for (;;) {
      st = state_if(fd);
      if (!st || (st->gen & 0x0fffffffu) != gen || st->accepted_head == st->accepted.size()) break;
      IoOp* op = st->accept_waiters.pop_front();
      if (!op) break;
      take_accepted(*st, *op);
      --pending_;
      ++n;
      finish(*op);
    }
    st = state_if(fd);
    if (st && (st->gen & 0x0fffffffu) == gen) {
      if (!st->accept_armed && !st->accept_waiters.empty())
        start_accept(fd, *st);
      else if (st->accept_armed && st->accepted.size() - st->accepted_head > kMaxQueuedAccepts)
        stop_multishot(key(Kind::accept, fd, st->gen), st->stopping_accept);
    }
    return n;
  }

  // ---- provided buffers

  std::size_t br_bytes() const noexcept {
    std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::size_t n = sizeof(io_uring_buf) * kBufCount;
    return (n + page - 1) / page * page;
  }

  void setup_buffers() noexcept {
    void* ring = ::mmap(nullptr, br_bytes(), PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    void* bufs = ::mmap(nullptr, std::size_t{kBufCount} * kBufSize, PROT_READ | PROT_WRITE,
                        MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (ring == MAP_FAILED || bufs == MAP_FAILED) {
      if (ring != MAP_FAILED) ::munmap(ring, br_bytes());
      if (bufs != MAP_FAILED) ::munmap(bufs, std::size_t{kBufCount} * kBufSize);
      return;  // no buffer ring: every receive is one-shot into its own buffer
    }
    br_ = static_cast<io_uring_buf_ring*>(ring);
    bufs_ = static_cast<char*>(bufs);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(br_);
    reg.ring_entries = kBufCount;
    reg.bgid = kBufGroup;
    if (io_uring_register_buf_ring(ring_.get(), &reg, 0) != 0) return;
    io_uring_buf_ring_init(br_);
    for (unsigned i = 0; i < kBufCount; ++i)
      io_uring_buf_ring_add(br_, buf_addr(static_cast<int>(i)), kBufSize, static_cast<unsigned short>(i),
                            io_uring_buf_ring_mask(kBufCount), static_cast<int>(i));
    io_uring_buf_ring_advance(br_, static_cast<int>(kBufCount));
    buffer_ring_ = true;
  }

  char* buf_addr(int bid) const noexcept { return bufs_ + static_cast<std::size_t>(bid) * kBufSize; }

  void release_buffer(int bid) noexcept {
    io_uring_buf_ring_add(br_, buf_addr(bid), kBufSize, static_cast<unsigned short>(bid),
                          io_uring_buf_ring_mask(kBufCount), 0);
    io_uring_buf_ring_advance(br_, 1);
  }

  // Buffers handed out by try_now: their data was read by the time the loop polls again.
  void release_later_buffers() noexcept {
    for (int bid : later_release_) release_buffer(bid);
    later_release_.clear();
  }

  // ---- teardown

  // The loop is going away with operations still submitted (owned by objects such as streams, which keep
  // themselves alive while an op is pending): complete each with -ECANCELED, or its real result if it
  // raced, so that their owners let go; otherwise those objects and their descriptors would leak.
  void abandon() noexcept {
    closing_ = true;
    for (int round = 0; round < 64; ++round) {
      for_each_state([&](FdState& st) {
        while (IoOp* op = st.recv_waiters.front()) cancel(*op);
        while (IoOp* op = st.accept_waiters.front()) cancel(*op);
      });
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
      io_uring_sqe_set_data64(sqe, key(Kind::ignore));
      std::size_t n = 0;
      try {
        n += run_deferred() + finish_done();
        for (int spin = 0; spin < 100 && inflight_ > 0; ++spin) {
          __kernel_timespec ts{0, 10'000'000};
          io_uring_cqe* cqe = nullptr;
          io_uring_submit_and_wait_timeout(ring_.get(), &cqe, 1, &ts, nullptr);
          n += reap();
        }
        n += finish_done();
      } catch (...) {
        // A completion threw while the loop closes: nothing can take it now.
      }
      if (n == 0 && inflight_ == 0) break;
    }
    release_later_buffers();
    for_each_state([&](FdState& st) { drop_queued(st); });
  }

  std::unique_ptr<io_uring> ring_;
  const bool single_issuer_;                                  // only owner_ may submit and reap
  const std::thread::id owner_ = std::this_thread::get_id();  // the thread that made the ring
  io_uring_buf_ring* br_ = nullptr;
  char* bufs_ = nullptr;
  bool buffer_ring_ = false;  // false: the kernel refused the provided-buffer ring
  bool closing_ = false;
  bool prepared_ = false;  // requests prepared since the last submission
  // Counts submissions (mod 256): a descriptor whose prep_epoch equals it may have a request prepared and
  // not submitted yet (a false alarm after 256 submissions costs one early submission, nothing more).
  std::uint8_t epoch_ = 1;
  std::size_t pending_ = 0;   // ops submitted and not completed (the seam's count)
  std::size_t inflight_ = 0;  // requests in the ring on behalf of ops (wake-up and signal polls excluded)
  std::size_t busy_polls_ = 0;
  std::vector<std::unique_ptr<FdState[]>> pages_;  // descriptor fd's state: pages_[fd / 64][fd % 64]
  IntrusiveList<IoOp> done_;  // completed without a request of their own: complete on the next poll
  struct Dropped {
    std::uint64_t user_data;
    bool accept;
  };
  std::vector<Dropped> dropped_;  // ops discarded before their completion came (see wait_for_completion)
  std::vector<Cqe> deferred_;     // completions taken out of the ring early (discard, a full ring)
  std::vector<int> later_release_;
  std::deque<io_uring_sqe>
      off_thread_sqes_;  // see get_sqe_full (a deque: the pointers handed out stay valid)
};

}  // namespace

std::unique_ptr<IoBackend> make_uring_backend(int& err, std::string& flags_used) {
  return UringBackend::create(err, flags_used);
}

}  // namespace corio::detail
