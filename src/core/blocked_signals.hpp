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

// The loop takes `signo` on the main thread (blocked there, read through a signalfd). A thread of the
// program's own that has it unblocked would still be given a process-directed one, with the disposition
// the program left (for most signals the default action: the end of the program, with no cleanup), and a
// thread-directed one always. So, as long as the loop takes it, its disposition is a handler that sends it
// on to the main thread (tgkill), where it waits, blocked, for the signalfd; the disposition it replaced is
// kept and given back by stop_forwarding (a child forked meanwhile gets it back at once). Main thread only;
// counted, so that two loops taking the same signal give it back once both let go.
void forward_to_main_thread(int signo);
void stop_forwarding(int signo) noexcept;

}  // namespace corio::detail
