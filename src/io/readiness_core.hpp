// The readiness core of the epoll backend (private to src/io): each operation first tries its system call
// (try_now); only on EAGAIN does it wait in its descriptor's reader or writer list, and the loop retries
// the list's head when the mechanism reports the descriptor ready. The mechanism (epoll_backend.cpp) is
// behind the hooks watch, unwatch, wait and SignalCore's watch_signals. (The io_uring backend,
// uring_backend.cpp, is completion-style and does not use this core.)
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "corio/core/errors.hpp"
#include "signal_core.hpp"

namespace corio::detail {

inline bool is_read_side(OpCode c) noexcept {
  constexpr unsigned kReadSide = 1u << unsigned(OpCode::recv) | 1u << unsigned(OpCode::read) |
                                 1u << unsigned(OpCode::accept) | 1u << unsigned(OpCode::recvfrom) |
                                 1u << unsigned(OpCode::poll_in);
  return (kReadSide >> unsigned(c)) & 1u;
}

class ReadinessCore : public SignalCore {
 protected:
  struct FdEntry;

 public:
  explicit ReadinessCore(int wakefd) noexcept : SignalCore(wakefd) {
    scratch_.resize(64 * 1024);  // (std::bad_alloc here would end the program: noexcept)
  }
  // Derived destructors call shutdown() first, while their mechanism still works.
  ~ReadinessCore() override = default;

 protected:
  void shutdown() noexcept {
    abandon_ops();
    close_signals_and_wakefd();
  }

 public:
  // The loop is going away with operations still submitted (the task frames that waited on ops are gone
  // already; what is left are ops owned by objects such as streams, which keep themselves alive while an op
  // is pending). Complete each with -ECANCELED, as forget() would, so that their owners let go: otherwise
  // those objects, and their descriptors, would leak.
  void abandon_ops() noexcept {
    for (int round = 0; round < 64; ++round) {
      bool any = false;
      for (auto& e : fds_) {
        if (!e) continue;
        while (IoOp* op = e->readers.front()) cancel(*op);
        while (IoOp* op = e->writers.front()) cancel(*op);
      }
      while (IoOp* op = done_.pop_front()) {
        any = true;
        op->pending = false;
        op->backend_state = 0;
        --pending_;
        op->complete();  // may close descriptors (forget) or, rarely, submit again: go round
      }
      if (!any) return;
    }
  }

  std::size_t pending() const noexcept override { return pending_; }

  bool try_now(IoOp& op) override {
    if (op.code == OpCode::poll_in || op.code == OpCode::poll_out) return false;
    FdEntry* e = entry_if(op.fd);
    if (e) {
      // Never jump ahead of operations already waiting in the same direction.
      if (!(is_read_side(op.code) ? e->readers : e->writers).empty()) return false;
      // Known not ready (EAGAIN and no edge since): the call would fail; wait for the edge instead.
      if (e->registered && !(is_read_side(op.code) ? e->readable : e->writable)) {
        just_tried_ = &op;
        return false;
      }

      // A stream's send, the most common call here, without the general path's switch.
      if (op.code == OpCode::send) {
        ssize_t r = ::send(op.fd, op.buf, op.len, op.flags | MSG_NOSIGNAL);
        if (r >= 0) {
          if (static_cast<std::size_t>(r) < op.len) e->writable = false;  // a short send: drained
          op.result = static_cast<std::int32_t>(r);
          return true;
        }
        return failed_now(e, op, errno);
      }
    }
    // Reads done at once this turn are counted: past the budget the read waits for the next turn (a
    // submit without just_tried_ retries it there), so a fast sender cannot keep one task reading without
    // ever suspending while every other task starves (asyncio reads once per readiness event).
    if (is_read_side(op.code)) {
      if (!e) e = &entry(op.fd);
      if (!read_budget_left(*e)) return false;
    }
    return try_now_general(e, op);
  }

 private:
  [[gnu::noinline]] bool try_now_general(FdEntry* e, IoOp& op) {
    if (op.code == OpCode::connect) {
      int r = ::connect(op.fd, op.addr, op.addrlen);
      if (r == 0) {
        op.result = 0;
        return true;
      }
      // Only EINPROGRESS is worth waiting for. A Unix socket whose server's backlog is full answers EAGAIN
      // and stays unconnected: no edge would ever come (it polls writable at once), so that is an error.
      if (errno == EINPROGRESS) {
        just_tried_ = &op;
        return false;
      }
      op.result = -errno;
      return true;
    }
    std::int64_t r = attempt(op);
    note_result(e, op, r);
    if (r == -EAGAIN || r == -EWOULDBLOCK) {
      just_tried_ = &op;
      return false;
    }
    op.result = static_cast<std::int32_t>(r);
    return true;
  }
  // try_now's send failed with err: wait for the edge after EAGAIN, else complete with the error.
  bool failed_now(FdEntry* e, IoOp& op, int err) noexcept {
    if (err == EAGAIN || err == EWOULDBLOCK) {
      e->writable = false;
      just_tried_ = &op;
      return false;
    }
    op.result = -err;
    return true;
  }

 public:
  void submit(IoOp& op) override {
    FdEntry& e = entry(op.fd);
    op.pending = true;
    ++pending_;
    bool read_side = is_read_side(op.code);
    (read_side ? e.readers : e.writers).push_back(op);
    bool just_tried = just_tried_ == &op;
    just_tried_ = nullptr;
    if (e.registered && just_tried) return;  // the edge after that EAGAIN will retry it: nothing to do
    if (int err = watch(e, op.fd, read_side, just_tried); err != 0) {
      op.unlink();
      op.result = -err;
      op.backend_state = kInDone;
      done_.push_back(op);
    }
  }

  void cancel(IoOp& op) noexcept override {
    if (!op.pending || op.backend_state == kInDone) return;
    op.unlink();
    op.result = -ECANCELED;
    op.backend_state = kInDone;
    done_.push_back(op);  // completes on the next poll: complete() never runs inside cancel()
  }

  void forget(int fd) noexcept override {
    FdEntry* e = entry_if(fd);
    if (!e) return;
    while (IoOp* op = e->readers.front()) cancel(*op);
    while (IoOp* op = e->writers.front()) cancel(*op);
    unwatch(*e, fd);
    e->readable = e->writable = true;  // the number may come back as another descriptor
    e->hup = false;
  }

  void release_idle(int fd) noexcept override {
    FdEntry* e = entry_if(fd);
    if (!e || !e->readers.empty() || !e->writers.empty()) return;
    unwatch(*e, fd);
    e->readable = e->writable = true;
    e->hup = false;
  }

  void discard(IoOp& op) noexcept override {
    if (just_tried_ == &op) just_tried_ = nullptr;  // (also an op that was only tried, never submitted)
    if (!op.pending) return;
    op.unlink();  // from its descriptor's list or from done_
    op.pending = false;
    op.backend_state = 0;
    --pending_;
  }

  std::size_t poll(std::int64_t timeout_ns) override {
    // A non-blocking poll with nothing watched can only find a wake-up (cross-thread posts are seen through
    // the loop's remote_pending_ flag) or a signal: skip the system call, except on every 256th busy turn
    // when signals are watched, so a busy loop still takes Ctrl-C (the system call costs about as much as
    // 25 loop turns; every 256th keeps it near 1% of a hand-off between two tasks). This test comes first
    // and the rest is out of line, so that such a turn (every turn of tasks handing work to each other)
    // costs a few instructions.
    ++turn_;
    const bool signal_turn = timeout_ns == 0 && sigfd_ >= 0 && (++busy_polls_ & 255) == 0;
    if (timeout_ns == 0 && !signal_turn && registered_ == 0 && done_.empty() && dirty_.empty()) return 0;
    return poll_slow(timeout_ns, signal_turn);
  }

 private:
  // poll() past the idle test (the same test as the io_uring backend's).
  [[gnu::noinline]] std::size_t poll_slow(std::int64_t timeout_ns, bool signal_turn) {
    std::size_t handled = finish_done();
    if (handled || !dirty_.empty()) timeout_ns = 0;
    // (Nothing registered: the dirty descriptors were forgotten since, their lists are empty. They are
    // still taken off the list: left there, they made every later poll return at once, a busy loop.)
    if (timeout_ns == 0 && registered_ == 0 && !signal_turn) return handled + run_dirty();
    handled += wait(timeout_ns);
    return handled + run_dirty();
  }
  // Retries the ops of the descriptors marked dirty (ops submitted without an event), emptying the list.
  std::size_t run_dirty() {
    if (dirty_.empty()) return 0;
    std::size_t handled = 0;
    std::vector<int> dirty;
    dirty.swap(dirty_);
    for (int fd : dirty) {
      if (FdEntry* e = entry_if(fd)) handled += run_list(fd, *e, true) + run_list(fd, *e, false);
    }
    return handled;
  }

 protected:
  // The mechanism's hooks. watch: an op now waits on fd in one direction (just_tried: its system call just
  // failed with EAGAIN); returns 0 or an errno that fails the op. unwatch: fd is about to be closed.
  // wait: block at most timeout_ns (-1: no limit) and report through on_ready/drain_wakefd/read_signals;
  // returns the events handled. watch_signals: start watching the signalfd. watch and unwatch keep
  // registered_ (a plain count, not a hook, so that a busy turn's poll makes no virtual call).
  virtual int watch(FdEntry& e, int fd, bool read_side, bool just_tried) noexcept = 0;
  virtual void unwatch(FdEntry& e, int fd) noexcept = 0;
  virtual std::size_t wait(std::int64_t timeout_ns) = 0;

  // The descriptor is ready (as the mechanism reports): retry the waiting ops of each ready direction.
  std::size_t on_ready(int fd, bool in, bool out, bool hup) {
    std::size_t handled = 0;
    FdEntry* e = entry_if(fd);
    if (!e) return 0;
    if (hup) e->hup = true;
    if (in || hup) {
      e->readable = true;
      handled += run_list(fd, *e, true);
    }
    if (out || hup) {
      e->writable = true;
      handled += run_list(fd, *e, false);
    }
    return handled;
  }
  struct FdEntry {
    IntrusiveList<IoOp> readers;
    IntrusiveList<IoOp> writers;
    bool registered = false;        // in the interest list
    std::uint32_t budget_turn = 0;  // the turn `reads` counts for (read_budget_left)
    std::uint32_t reads = 0;
    // Readiness as last seen (edge-triggered: false after EAGAIN until epoll reports an edge). While
    // false, try_now skips the system call that would only fail with EAGAIN again.
    bool readable = true;
    bool writable = true;
    // The peer closed or the descriptor failed (RDHUP/HUP/ERR seen): EOF may sit behind the data, and no
    // edge would announce it again, so a short read no longer means "drained". Likewise once TCP urgent
    // data came (PRI): a read stops at the urgent mark, with the rest of the data behind it.
    bool hup = false;
  };
  static constexpr std::uint8_t kInDone = 1;  // IoOp::backend_state: on done_

  // Remembers what an attempt revealed about the descriptor's readiness.
  void note_result(FdEntry* e, const IoOp& op, std::int64_t r) noexcept {
    if (!e) return;
    bool read_side = is_read_side(op.code);
    bool drained = r == -EAGAIN || r == -EWOULDBLOCK;
    // A short stream read (into the backend's buffer) or a short send also means "drained for now": the
    // next arrival raises a new edge.
    if (r >= 0 && !drained) {
      if (read_side)
        drained = !e->hup && op.buf == nullptr && (op.code == OpCode::recv || op.code == OpCode::read) &&
                  static_cast<std::size_t>(r) < std::min(op.len ? op.len : scratch_.size(), scratch_.size());
      else
        drained =
            (op.code == OpCode::send || op.code == OpCode::write) && static_cast<std::size_t>(r) < op.len;
    }
    if (drained) (read_side ? e->readable : e->writable) = false;
  }

  FdEntry* entry_if(int fd) noexcept {
    return fd >= 0 && static_cast<std::size_t>(fd) < fds_.size() ? fds_[fd].get() : nullptr;
  }
  FdEntry& entry(int fd) {
    if (FdEntry* e = entry_if(fd)) return *e;
    return new_entry(fd);
  }
  [[gnu::noinline]] FdEntry& new_entry(int fd) {
    if (static_cast<std::size_t>(fd) >= fds_.size())
      fds_.resize(std::max<std::size_t>(fd + 1, fds_.size() * 2));
    if (!fds_[fd]) fds_[fd] = std::make_unique<FdEntry>();
    return *fds_[fd];
  }

  // The system call of `op`, as -errno on failure.
  std::int64_t attempt(IoOp& op) {
    ssize_t r = 0;
    switch (op.code) {
      case OpCode::recv:
        if (op.buf) {
          r = ::recv(op.fd, op.buf, op.len, op.flags);
        } else {
          r = ::recv(op.fd, scratch_.data(), std::min(op.len ? op.len : scratch_.size(), scratch_.size()),
                     op.flags);
          op.data = scratch_.data();
        }
        break;
      case OpCode::read:
        if (op.buf) {
          r = ::read(op.fd, op.buf, op.len);
        } else {
          r = ::read(op.fd, scratch_.data(), std::min(op.len ? op.len : scratch_.size(), scratch_.size()));
          op.data = scratch_.data();
        }
        break;
      case OpCode::send:
        r = ::send(op.fd, op.buf, op.len, op.flags | MSG_NOSIGNAL);
        break;
      case OpCode::sendv: {
        msghdr msg{};
        msg.msg_iov = const_cast<iovec*>(op.iov);
        msg.msg_iovlen = static_cast<std::size_t>(op.iovcnt);
        r = ::sendmsg(op.fd, &msg, MSG_NOSIGNAL);
        break;
      }
      case OpCode::write:
        r = ::write(op.fd, op.buf, op.len);
        break;
      case OpCode::accept: {
        socklen_t len = op.addrlen;
        r = ::accept4(op.fd, op.addr, op.addr ? &len : nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (r >= 0) op.addrlen = len;
        break;
      }
      case OpCode::recvfrom: {
        socklen_t len = op.addrlen;
        r = ::recvfrom(op.fd, op.buf, op.len, op.flags, op.addr, op.addr ? &len : nullptr);
        if (r >= 0) op.addrlen = len;
        break;
      }
      case OpCode::sendto:
        r = ::sendto(op.fd, op.buf, op.len, op.flags | MSG_NOSIGNAL, op.addr, op.addrlen);
        break;
      case OpCode::connect: {
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(op.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
        if (err == EINPROGRESS || err == EALREADY) return -EAGAIN;
        if (err != 0) return -err;
        // SO_ERROR is also 0 while the handshake is still going on, so a retry that came without an edge
        // must not take it for success: a peer name says the connection is made (ENOTCONN until then).
        sockaddr_storage peer{};
        len = sizeof peer;
        if (::getpeername(op.fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0) return 0;
        return errno == ENOTCONN ? -EAGAIN : -errno;
      }
      case OpCode::poll_in:
      case OpCode::poll_out: {
        // Readiness is confirmed, not assumed: a retry of a newly submitted op comes without an event.
        pollfd p{op.fd, static_cast<short>(op.code == OpCode::poll_in ? POLLIN : POLLOUT), 0};
        if (::poll(&p, 1, 0) < 0) return -errno;
        if (p.revents & POLLNVAL) return -EBADF;  // (closed under the wait: not "ready")
        return p.revents ? 0 : -EAGAIN;
      }
    }
    return r < 0 ? -errno : r;
  }

  // Retries the head of one direction's list until an op would block again. (Entries live as long as the
  // backend, so e stays valid while completions close descriptors or open new ones.)
  std::size_t run_list(int fd, FdEntry& e, bool readers) {
    std::size_t n = 0;
    IntrusiveList<IoOp>& list = readers ? e.readers : e.writers;
    while (IoOp* op = list.front()) {
      if (readers && n > 0 && !read_budget_left(e)) {
        // A reader that keeps asking (a stream reading ahead for a large readexactly) waits for the next
        // turn once this descriptor's budget is spent; the descriptor is retried then. (The first read of
        // a readiness event is not counted: only a list that goes round is.)
        dirty_.push_back(fd);
        return n;
      }
      std::int64_t r = attempt(*op);
      note_result(&e, *op, r);
      if (r == -EAGAIN || r == -EWOULDBLOCK) return n;
      op->unlink();
      op->result = static_cast<std::int32_t>(r);
      op->pending = false;
      --pending_;
      ++n;
      op->complete();  // only enqueues (wakes a task) or consumes op->data at once
    }
    return n;
  }

  std::size_t finish_done() {
    std::size_t n = 0;
    while (IoOp* op = done_.pop_front()) {
      op->pending = false;
      op->backend_state = 0;
      --pending_;
      ++n;
      op->complete();
    }
    return n;
  }

  // Reads one descriptor may complete in one loop turn (of 64 KiB at most each): 1 MiB, then it waits a turn.
  static constexpr std::uint32_t kReadsPerTurn = 16;
  bool read_budget_left(FdEntry& e) noexcept {
    if (e.budget_turn != turn_) {
      e.budget_turn = turn_;
      e.reads = 0;
    }
    return ++e.reads <= kReadsPerTurn;
  }

  std::uint32_t turn_ = 0;  // poll() calls: one per loop turn
  std::size_t busy_polls_ = 0;
  std::size_t registered_ = 0;  // descriptors in the interest list besides the eventfd and signalfd
  std::size_t pending_ = 0;     // ops submitted and not completed
  std::vector<std::unique_ptr<FdEntry>> fds_;
  IntrusiveList<IoOp> done_;  // cancelled or failed at submission: complete on the next poll
  std::vector<int> dirty_;
  IoOp* just_tried_ = nullptr;  // the op whose try_now just hit EAGAIN (no retry needed at submit)
  std::vector<char> scratch_;   // receive buffer for ops without their own
};

}  // namespace corio::detail
