#include "blocked_signals.hpp"

#include <pthread.h>

#include <mutex>

namespace corio::detail {
namespace {

constinit thread_local sigset_t tl_blocked{};  // (all bits clear: the empty set)

// In the child of a fork, on the thread that forked.
void unblock_in_child() noexcept { ::pthread_sigmask(SIG_UNBLOCK, &tl_blocked, nullptr); }

}  // namespace

void note_blocked_signals(const sigset_t& sigs) noexcept {
  static std::once_flag registered;
  std::call_once(registered, [] { ::pthread_atfork(nullptr, nullptr, unblock_in_child); });
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

}  // namespace corio::detail
