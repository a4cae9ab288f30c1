// The loop's only view of the OS: wait for I/O readiness or completions for at most a timeout, and be
// woken from another thread. The io layer implements it (epoll, io_uring) and extends it with operations;
// core never names a socket.
#pragma once

#include <cstddef>
#include <cstdint>
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
  // Operations submitted and not yet completed (virtual time does not jump past pending I/O it cannot see).
  virtual std::size_t pending() const noexcept { return 0; }
};

// Defined by the io layer. Throws RuntimeError naming the reason when `requested` cannot be provided.
std::unique_ptr<Poller> make_poller(Backend requested, bool debug);

}  // namespace corio::detail
