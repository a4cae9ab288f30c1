// Waiting on a descriptor corio does not own (asyncio's loop.add_reader / add_writer, trio's
// wait_readable / wait_writable): for a library that hands out a file descriptor and expects its owner to
// call it back when the descriptor is ready (a database client, libcurl's multi interface, inotify, a pipe
// from another library).
//
// Contract of `co_await wait_readable(fd)` / `wait_writable(fd)`: returns once the descriptor is readable
// (or writable), or in error or hung up (then the next read or write reports it), without reading or writing
// anything; the awaiting task suspends until the loop's backend reports it, on a later turn. A descriptor
// that is not open throws OSError (EBADF); on epoll, so does a regular file (EPERM, as asyncio's add_reader),
// which io_uring reports ready at once. Cancellation ends the wait at once with CancelledError. The loop
// watches the descriptor only while a wait is pending (asyncio's add_reader keeps it until remove_reader):
// to close it while a task may still wait on it, use close_fd(fd) (or forget_fd(fd) first), which ends that
// wait with OSError (ECANCELED); closed with a plain ::close under a pending wait, the wait is left hanging.
// Like asyncio, the descriptor should be non-blocking, and only one task should wait on each direction of it
// at a time. Not for a descriptor a corio stream, server or socket uses (asyncio refuses that): on io_uring
// the stream's receive takes the data first and the wait may never end. forget_fd and close_fd act on the
// running loop: between two runs of a loop, cancel its waits on the descriptor first.
#pragma once

#include "corio/core/task.hpp"

namespace corio {

Task<> wait_readable(int fd);
Task<> wait_writable(int fd);

// The running loop forgets fd (waits on it end with OSError ECANCELED), before the caller closes it. Outside
// a running loop it does nothing.
void forget_fd(int fd) noexcept;
// forget_fd(fd), then ::close(fd).
void close_fd(int fd) noexcept;

}  // namespace corio
