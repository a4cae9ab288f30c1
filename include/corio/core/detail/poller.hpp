// The loop's only view of the OS: wait for I/O readiness or completions for at most a timeout, and be
// woken from another thread. The io layer implements it (epoll, io_uring) and extends it with operations;
// core never names a socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

namespace corio {
enum class Backend { automatic, epoll, io_uring };
}  // namespace corio

namespace corio::detail {

class Poller {
 public:
  virtual ~Poller() = default;
  virtual Backend backend() const noexcept = 0;
  // Waits at most timeout_ns (-1: no limit, 0: do not block), then enqueues the work of every event that
  // arrived. Returns how many events it handled (wake-ups excluded).
  virtual std::size_t poll(std::int64_t timeout_ns) = 0;
  // Interrupts a poll() in progress or makes the next one return at once. Thread-safe.
  virtual void wake() noexcept = 0;
  // Operations submitted and not yet completed (introspection; virtual time jumps when a zero-timeout poll
  // finds nothing ready, pending or not, as tokio's auto-advance does).
  virtual std::size_t pending() const noexcept { return 0; }
  // Runs `on_signal` from poll() each time signal `signo` arrives (the signal is then blocked for this
  // thread and taken through the backend, e.g. a signalfd). Replaces an earlier handler of the same signal.
  virtual void add_signal_handler(int signo, std::function<void()> on_signal) = 0;
  // Returns false if no handler was set for signo; otherwise removes it and unblocks the signal.
  virtual bool remove_signal_handler(int signo) = 0;
  // Whether this thread is the process's main thread (only there may run() take over SIGINT).
  virtual bool on_main_thread() const noexcept = 0;
  // The loop starts running on the calling thread. A backend that serves one thread only (io_uring with
  // SINGLE_ISSUER: the thread that made it) throws RuntimeError on any other.
  virtual void attach_thread() {}
};

// Defined by the io layer. Throws RuntimeError naming the reason when `requested` cannot be provided.
std::unique_ptr<Poller> make_poller(Backend requested, bool debug);

}  // namespace corio::detail
