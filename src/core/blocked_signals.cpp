#include "blocked_signals.hpp"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <system_error>

namespace corio::detail {
namespace {

constinit thread_local sigset_t tl_blocked{};  // (all bits clear: the empty set)

// The signals forwarded to the main thread: the disposition each replaced, and how many loops take it.
// Written on the main thread only; read by forward_signal, on any thread, only while it is installed.
struct Forward {
  struct sigaction prev;
  int users;
};
constinit Forward forwards[NSIG] = {};
// The process whose main thread takes the forwarded signals (a forked child is another one).
constinit std::atomic<pid_t> forwarding_pid{0};

// Runs on a thread that has the signal unblocked: never the main thread while the loop takes it there.
// Async-signal-safe: getpid, gettid, tgkill, sigaction and raise are.
extern "C" void forward_signal(int signo) {
  const int saved_errno = errno;
  const pid_t pid = ::getpid();
  if (pid == forwarding_pid.load(std::memory_order_relaxed)) {
    // Pending on the main thread, where it is blocked, so the loop's signalfd reads it. (On the main thread
    // itself, which only the program unblocking it there can cause, it would come straight back: dropped.)
    if (::gettid() != pid) ::tgkill(pid, pid, signo);
  } else {
    // A forked child, before its fork handler ran: what the program had set.
    ::sigaction(signo, &forwards[signo].prev, nullptr);
    ::raise(signo);
  }
  errno = saved_errno;
}

// In the child of a fork, on the thread that forked: no loop takes signals here. The dispositions first,
// so that a signal pending once unblocked gets the program's own.
void restore_in_child() noexcept {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (forwards[sig].users > 0) {
      ::sigaction(sig, &forwards[sig].prev, nullptr);
      forwards[sig].users = 0;
    }
  }
  ::pthread_sigmask(SIG_UNBLOCK, &tl_blocked, nullptr);
}

void register_fork_handler() {
  static std::once_flag registered;
  std::call_once(registered, [] { ::pthread_atfork(nullptr, nullptr, restore_in_child); });
}

}  // namespace

void note_blocked_signals(const sigset_t& sigs) noexcept {
  register_fork_handler();
  sigorset(&tl_blocked, &tl_blocked, &sigs);
}

void note_unblocked_signals(const sigset_t& sigs) noexcept {
  for (int sig = 1; sig < NSIG; ++sig)
    if (sigismember(&sigs, sig) == 1) sigdelset(&tl_blocked, sig);
}

sigset_t program_mask(const sigset_t& current) noexcept {
  sigset_t m = current;
  for (int sig = 1; sig < NSIG; ++sig)
    if (sigismember(&tl_blocked, sig) == 1) sigdelset(&m, sig);
  return m;
}

void forward_to_main_thread(int signo) {
  Forward& f = forwards[signo];
  if (f.users > 0) {
    ++f.users;
    return;
  }
  register_fork_handler();
  forwarding_pid.store(::getpid(), std::memory_order_relaxed);
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sa.sa_flags = SA_RESTART;  // the program's threads' system calls go on where they can
  sigfillset(&sa.sa_mask);
  if (::sigaction(signo, &sa, &f.prev) != 0)
    throw std::system_error(errno, std::generic_category(), "sigaction");
  f.users = 1;
}

void stop_forwarding(int signo) noexcept {
  Forward& f = forwards[signo];
  if (f.users == 0 || --f.users > 0) return;
  ::sigaction(signo, &f.prev, nullptr);
}

}  // namespace corio::detail
