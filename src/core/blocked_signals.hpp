// Signals corio blocks on a thread of the program's (the loop's, for a signalfd) or of its own (helper
// threads block nearly all): a child forked from that thread and exec'd by hand (fork + execvp, a library's
// launcher) would inherit them blocked, so that SIGTERM or Ctrl-C could not stop it. Python blocks nothing
// there; corio unblocks, in such a child, what it blocked. (create_subprocess_exec sets the child's mask
// itself; posix_spawn runs no fork handlers.) Private to corio.
#pragma once

#include <csignal>

namespace corio::detail {

// `sigs` were blocked by corio on this thread (the program had not blocked them).
void note_blocked_signals(const sigset_t& sigs) noexcept;
// `sigs` are no longer blocked by corio on this thread.
void note_unblocked_signals(const sigset_t& sigs) noexcept;
// The mask the program itself asked for on this thread: `current` (the thread's mask) less what corio
// blocked.
sigset_t program_mask(const sigset_t& current) noexcept;

}  // namespace corio::detail
