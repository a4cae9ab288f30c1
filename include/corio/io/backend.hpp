// The one seam to the OS for I/O: operations submitted to the loop's backend (epoll or io_uring).
//
// Completion-style on purpose, so both backends fit: an IoOp describes one system call (recv, send, read,
// write, accept, connect, or a readiness wait); the backend completes it exactly once by setting `result`
// (>= 0, or -errno) and calling complete() on the loop's thread, on a later turn than submit(). The op and
// the memory it points to must stay alive until then. cancel() asks for prompt completion with -ECANCELED
// (an op that raced to completion keeps its real result). The epoll backend tries the system call first,
// in try_now(), and waits for readiness only on EAGAIN; the io_uring backend submits instead (try_now
// answers only from what a multishot receive or accept already delivered).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "corio/core/detail/intrusive_list.hpp"
#include "corio/core/detail/poller.hpp"

namespace corio::detail {

enum class OpCode : std::uint8_t {
  recv,      // recv(fd, buf, len, flags); buf == nullptr: into the backend's buffer, see data
  send,      // send(fd, buf, len, flags | MSG_NOSIGNAL)
  sendv,     // sendmsg(fd, iov[iovcnt], MSG_NOSIGNAL)
  read,      // read(fd, buf, len); buf == nullptr as for recv
  write,     // write(fd, buf, len)
  accept,    // accept4(fd, addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC); result = the new fd (flags: below)
  connect,   // connect(fd, addr, addrlen) on a non-blocking socket; result = 0
  recvfrom,  // recvfrom(fd, buf, len, flags, addr, addrlen)
  sendto,    // sendto(fd, buf, len, flags | MSG_NOSIGNAL, addr, addrlen)
  poll_in,   // wait until readable; result = 0
  poll_out,  // wait until writable; result = 0
};

// accept's flags: take one connection when asked and never accept ahead (io_uring's multishot accept takes
// connections out of the backlog before anyone asks).
inline constexpr int kAcceptOnlyWhenAsked = 1;

struct IoOp : ListNode {
  // Ordered so that what a send or a receive touches fills the first 64 bytes (with the vtable pointer and
  // the list links) and the rest, used by fewer kinds of op, comes after: with 100s of connections an op
  // is out of the L1 cache each time it is used, so one line instead of two is one miss less.
  OpCode code = OpCode::poll_in;
  bool pending = false;            // submitted and not completed yet
  std::uint8_t backend_state = 0;  // private to the backend
  int fd = -1;
  int flags = 0;
  // >= 0 or -errno, valid once completed. 32 bits: the kernel moves at most INT_MAX & PAGE_MASK bytes in
  // one call (and an io_uring completion carries an int).
  std::int32_t result = 0;
  void* buf = nullptr;
  std::size_t len = 0;
  const char* data = nullptr;  // recv/read into the backend's buffer: the bytes, valid in complete()
  // ---- second line
  void* backend_data = nullptr;  // private to the backend (io_uring: a message header or own buffer)
  const iovec* iov = nullptr;
  sockaddr* addr = nullptr;  // accept/recvfrom: filled in; connect/sendto: read
  socklen_t addrlen = 0;     // in: capacity or length; out: length
  int iovcnt = 0;

  // Called once, on the loop's thread, when the op is done.
  virtual void complete() = 0;

 protected:
  ~IoOp() = default;
};

// Closes an accepted connection nobody will serve (its server closed, its accept cancelled) with a reset
// (SO_LINGER 0), so that its client sees ECONNRESET, as for a connection the kernel drops from a closed
// listener's backlog, never a clean EOF it could take for a served connection.
void abort_accepted(int fd) noexcept;

class IoBackend;

// Knows whether a backend still exists. Objects that own a descriptor (streams, datagram sockets, servers)
// keep one from their loop's backend: closing the descriptor while that loop is not running (between two
// run_until_complete calls) must still forget it there, or the backend would apply what it knew of the
// descriptor (watched, ready, an armed receive) to the next file given the same number; once the loop is
// gone there is nothing to forget.
struct BackendLink {
  IoBackend* backend;  // null once the backend is destroyed
};

class IoBackend : public Poller {
 public:
  IoBackend() : link_(std::make_shared<BackendLink>(BackendLink{this})) {}
  ~IoBackend() override { link_->backend = nullptr; }
  const std::shared_ptr<BackendLink>& link() const noexcept { return link_; }

  // Runs the operation now if it can finish without waiting (epoll) and returns true with `result` set;
  // complete() is not called then. Returns false if it must be submitted.
  virtual bool try_now(IoOp& op) = 0;
  // Starts the operation; complete() follows on a later turn.
  virtual void submit(IoOp& op) = 0;
  // Asks a pending operation to complete promptly with -ECANCELED.
  virtual void cancel(IoOp& op) noexcept = 0;
  // The descriptor is about to be closed: pending ops on it complete with -ECANCELED.
  virtual void forget(int fd) noexcept = 0;
  // Nothing waits on fd now, and its owner may close it without forget() (a descriptor corio does not own,
  // waited on through wait_readable): a backend that keeps it watched between ops (epoll) lets go of it, so
  // that a descriptor opened later under the same number is watched afresh. Ops still pending on it: nothing.
  virtual void release_idle(int) noexcept {}
  // The op's owner is being destroyed while it is pending: drop it without completing it. Also for an op
  // whose try_now() did not complete and that will not be submitted: the backend forgets it was tried.
  virtual void discard(IoOp& op) noexcept = 0;
  // Called after forget() while the loop is not running: hand the kernel now whatever forget() left for
  // the next poll (io_uring's cancels), so that the descriptor's file is let go of when it is closed (a
  // listening port freed, a FIN sent) rather than when the loop next runs, if ever.
  virtual void flush() noexcept {}

 private:
  std::shared_ptr<BackendLink> link_;
};

// The running loop's backend; throws RuntimeError outside a running loop.
IoBackend& io_backend();

}  // namespace corio::detail
