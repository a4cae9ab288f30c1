// What both backends share besides their I/O mechanism (private to src/io): the cross-thread wake-up
// eventfd and the signals taken through a signalfd. A backend watches wakefd_ and, once a handler exists,
// the signalfd its watch_signals() hook is given; when either is readable it calls drain_wakefd() or
// read_signals().
#pragma once

#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <system_error>

#include "../core/blocked_signals.hpp"
#include "corio/core/errors.hpp"
#include "corio/io/backend.hpp"

namespace corio::detail {

class SignalCore : public IoBackend {
 public:
  explicit SignalCore(int wakefd) noexcept : wakefd_(wakefd) {
    sigemptyset(&sigmask_);
    sigemptyset(&preblocked_);
  }

  void add_signal_handler(int signo, std::function<void()> on_signal) override {
    // (sigaddset refuses the signals the C library keeps for itself: glibc's 32 and 33, its thread
    // cancellation and set*id broadcasts; sigaction would refuse them later, with EINVAL.)
    sigset_t probe;
    sigemptyset(&probe);
    if (signo <= 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP || sigaddset(&probe, signo) != 0)
      throw RuntimeError("add_signal_handler: invalid signal " + std::to_string(signo));
    // The signal is blocked on this thread only: a process-directed one would go to the main thread (or
    // another) with its default action, ending the program. asyncio refuses too.
    if (!on_main_thread())
      throw RuntimeError("add_signal_handler: signals can only be handled by a loop on the main thread");
    if (!sigismember(&sigmask_, signo)) {
      // Remember whether the program had blocked it itself: then removing the handler must not unblock it.
      sigset_t cur;
      pthread_sigmask(SIG_BLOCK, nullptr, &cur);
      if (sigismember(&cur, signo)) {
        sigaddset(&preblocked_, signo);
      } else {
        sigdelset(&preblocked_, signo);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, signo);
        note_blocked_signals(one);  // a child this thread forks gets it unblocked
      }
    }
    sigset_t mask = sigmask_;
    sigaddset(&mask, signo);
    int fd = ::signalfd(sigfd_, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "signalfd");
    if (!sigismember(&sigmask_, signo)) {
      try {
        forward_to_main_thread(signo);  // a thread of the program's with it unblocked hands it on
      } catch (...) {
        if (fd != sigfd_) ::close(fd);
        throw;
      }
    }
    sigmask_ = mask;
    pthread_sigmask(SIG_BLOCK, &sigmask_, nullptr);
    if (sigfd_ < 0) {
      sigfd_ = fd;
      watch_signals(sigfd_);
    }
    signal_handlers_[signo] = std::move(on_signal);
  }

  bool remove_signal_handler(int signo) override {
    auto it = signal_handlers_.find(signo);
    if (it == signal_handlers_.end()) return false;
    signal_handlers_.erase(it);
    sigdelset(&sigmask_, signo);
    if (sigfd_ >= 0) ::signalfd(sigfd_, &sigmask_, SFD_NONBLOCK | SFD_CLOEXEC);
    stop_forwarding(signo);  // before unblocking: a forwarded signal would come back to this thread
    if (!sigismember(&preblocked_, signo)) {
      sigset_t one;
      sigemptyset(&one);
      sigaddset(&one, signo);
      drop_pending(one);
      pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
      note_unblocked_signals(one);
    }
    return true;
  }

  bool on_main_thread() const noexcept override { return ::gettid() == ::getpid(); }

  void wake() noexcept override {
    std::uint64_t one = 1;
    ssize_t r = ::write(wakefd_, &one, sizeof one);
    (void)r;
  }

 protected:
  // Start watching the signalfd (called once, when the first handler is added).
  virtual void watch_signals(int sigfd) = 0;

  // Unblocks the signals this backend blocked and closes both descriptors. Derived destructors call it
  // after their own teardown, while their mechanism still works.
  void close_signals_and_wakefd() noexcept {
    if (sigfd_ >= 0) {
      for (int signo = 1; signo < NSIG; ++signo)
        if (sigismember(&sigmask_, signo) == 1) stop_forwarding(signo);
      sigset_t ours = ours_to_unblock();
      drop_pending(ours);
      pthread_sigmask(SIG_UNBLOCK, &ours, nullptr);
      note_unblocked_signals(ours);
      ::close(sigfd_);
      sigfd_ = -1;
    }
    ::close(wakefd_);
  }

  void drain_wakefd() noexcept {
    std::uint64_t v;
    while (::read(wakefd_, &v, sizeof v) > 0) {
    }
  }

  std::size_t read_signals() {
    std::size_t n = 0;
    signalfd_siginfo info;
    while (::read(sigfd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      auto it = signal_handlers_.find(static_cast<int>(info.ssi_signo));
      if (it != signal_handlers_.end()) {
        it->second();
        ++n;
      }
    }
    return n;
  }

  int wakefd_ = -1;
  int sigfd_ = -1;

 private:
  // Takes, and drops, what is pending of `set` (for this thread or the process) before it is unblocked: a
  // signal that came while its handler was installed, and was not read yet, would otherwise get its
  // default action then, which for most signals ends the program. (asyncio too drops a signal whose handler
  // is gone by the time it is dispatched.)
  static void drop_pending(const sigset_t& set) noexcept {
    timespec zero{};
    for (;;) {
      if (::sigtimedwait(&set, nullptr, &zero) > 0) continue;
      if (errno != EINTR) return;
    }
  }

  // The signals this backend blocked (and the program had not blocked already).
  sigset_t ours_to_unblock() const noexcept {
    sigset_t s;
    sigemptyset(&s);
    for (int signo = 1; signo < NSIG; ++signo)
      if (sigismember(&sigmask_, signo) == 1 && sigismember(&preblocked_, signo) != 1) sigaddset(&s, signo);
    return s;
  }

  sigset_t sigmask_;     // signals taken through sigfd_ (blocked on this thread)
  sigset_t preblocked_;  // of those, the ones the thread had blocked before: left blocked on removal
  std::map<int, std::function<void()>> signal_handlers_;
};

}  // namespace corio::detail
