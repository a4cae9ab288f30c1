// run(): asyncio.run for corio.
#pragma once

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/task.hpp"

namespace corio {

// Creates a new event loop on this thread, runs `main` as its first task until it is done, then cancels
// every task still running and waits for them, runs the loop's shutdown hooks (the thread pool), closes the
// loop and returns main's value or rethrows its exception. Throws RuntimeError inside a running loop.
template <class T>
T run(Task<T> main, RunOptions options = {}) {
  if (detail::LoopCore::running_) throw RuntimeError("run() cannot be called from a running event loop");
  EventLoop loop(options);
  TaskHandle<T> h = loop.spawn(std::move(main));
  try {
    loop.run_until_done(*h.state());
  } catch (...) {
    loop.shutdown_and_close();
    throw;
  }
  loop.shutdown_and_close();
  h.state()->exc_retrieved_ = true;
  return detail::state_cast<T>(h.state())->take();
}

}  // namespace corio
