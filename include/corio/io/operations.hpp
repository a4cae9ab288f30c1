// Awaitable I/O operations on a descriptor: one system call each, through the loop's backend.
//
// Contract: `co_await io_op(...)` returns the system call's result (>= 0) or -errno; it never throws for
// an I/O error (callers turn -errno into typed errors). If the call can complete at once (epoll: tried
// first) there is no suspension; otherwise the task suspends and is resumed by the loop on the turn the
// backend completes the op. Cancellation cancels the op promptly and throws CancelledError; an accepted
// descriptor that raced the cancellation is closed, never leaked.
#pragma once

#include <sys/socket.h>

#include <cerrno>

#include <cstddef>
#include <cstdint>
#include <string>

#include "corio/core/detail/runtime.hpp"
#include "corio/io/backend.hpp"

namespace corio::detail {

void close_fd(int fd) noexcept;  // forget in the running loop's backend, then close (a no-op for fd < 0)
// Forgets fd in owner's backend if it still exists, whether or not its loop runs (and in the running
// loop's), then closes it. For objects that keep their loop's BackendLink and may be closed between runs;
// a null owner (made outside any loop) is close_fd(fd).
void close_fd(int fd, const BackendLink* owner) noexcept;
// fd is about to be used in the running loop (an object that may be used from several loops in turn: a
// datagram socket, a process's pidfd). If `link` names another loop's backend, that backend forgets fd (it
// may have it registered) and `link` follows the running loop, so that close_fd(fd, link) later tells the
// backend that last used fd, even between that loop's runs.
void follow_running_loop(int fd, std::shared_ptr<BackendLink>& link) noexcept;

class IoAwaiter final : public Waiter, public IoOp {
 public:
  IoAwaiter(OpCode c, int fd_, void* buf_ = nullptr, std::size_t len_ = 0, int flags_ = 0,
            sockaddr* addr_ = nullptr, socklen_t addrlen_ = 0) noexcept {
    code = c;
    fd = fd_;
    buf = buf_;
    len = len_;
    flags = flags_;
    addr = addr_;
    addrlen = addrlen_;
  }
  ~IoAwaiter() {
    if (pending && be_) be_->discard(*this);
  }

  bool await_ready() {
    be_ = &io_backend();
    if (fd < 0) [[unlikely]] {  // (a closed object's -1: the backends index their tables by descriptor)
      result = -EBADF;
      return true;
    }
    return be_->try_now(*this);
  }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    be_->submit(*this);
    suspend_on(h);
  }
  std::int64_t await_resume() {
    // An accepted descriptor the task will not see (it throws CancelledError instead: the op was cancelled
    // but raced to completion, or the task was cancelled after the op completed and before it ran) is
    // closed here, never leaked.
    if (code == OpCode::accept && result >= 0 && (cancel_requested_ || (task_ && task_->cancel_pending()))) {
      abort_accepted(static_cast<int>(result));
      result = -ECANCELED;
    }
    throw_if_cancelled();
    return result;
  }
  void complete() override {
    if (cancel_requested_) task_->must_cancel_ = true;
    wake();
  }
  bool cancel() override {
    cancel_requested_ = true;
    be_->cancel(*this);
    return true;
  }
  // The op goes at once (io_uring waits here for the kernel to let go of it): the backend may be gone by
  // the time this awaiter is destroyed.
  void orphan() noexcept override {
    if (pending) be_->discard(*this);
    handle_ = nullptr;
    detach();
  }
  void describe(std::string& out) const override;

 private:
  IoBackend* be_ = nullptr;
  bool cancel_requested_ = false;
};

}  // namespace corio::detail
