// run(): asyncio.run for corio.
#pragma once

#include <functional>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/task.hpp"

namespace corio {
namespace detail {
// Installs on_sigint as the loop's SIGINT handler if this is the main thread and SIGINT has its default
// disposition; returns whether it did.
// on_sigint returns false when there is nothing left to cancel: that Ctrl-C then ends the program at once,
// as a second one does.
bool take_over_sigint(EventLoop& loop, std::function<bool()> on_sigint);
// Removes that handler; if SIGINT cancelled the main task, re-raises SIGINT with the default disposition
// (ends the process). A main task that swallowed the cancellation returns normally.
void give_back_sigint(EventLoop& loop, bool interrupted);
}  // namespace detail

// Creates a new event loop on this thread, runs `main` as its first task until it is done, then cancels
// every task still running and waits for them, joins the loop's helper threads (the thread pool, while the
// loop still runs: a call still running may use it, as with asyncio's shutdown_default_executor), closes the
// loop and returns main's value or rethrows its exception. Throws RuntimeError inside a running loop.
//
// Ctrl-C: on the main thread, when SIGINT has its default disposition, run() takes SIGINT over: it
// cancels the main task (CancelledError("SIGINT") at its current await), lets it and every other task
// clean up, closes the loop, then re-raises SIGINT with the default disposition, so the process ends as
// an uncaught Ctrl-C does (exit status 130 in a shell) — asyncio.run's KeyboardInterrupt, in C++ terms.
template <class T>
T run(Task<T> main, RunOptions options = {}) {
  if (detail::LoopCore::running_) throw RuntimeError("run() cannot be called from a running event loop");
  EventLoop loop(options);
  TaskHandle<T> h = loop.spawn(std::move(main));
  bool interrupted = false;
  bool sigint = detail::take_over_sigint(loop, [&interrupted, h]() mutable {
    if (h.done()) return false;  // main is done, the rest is cleaning up: as asyncio, stop at once
    interrupted = true;
    h.cancel("SIGINT");
    return true;
  });
  try {
    loop.run_until_done(*h.state());
  } catch (...) {  // (the loop was stopped before main was done)
    loop.shutdown_and_close();
    // A Ctrl-C taken during that cleanup ends the process, as on the normal path; none: SIGINT is given back.
    if (sigint) detail::give_back_sigint(loop, interrupted);
    throw;
  }
  loop.shutdown_and_close();
  if (sigint) detail::give_back_sigint(loop, interrupted && h.cancelled());
  h.state()->exc_retrieved_ = true;
  return detail::state_cast<T>(h.state())->take();
}

}  // namespace corio
