// The epoll backend of the loop's poller: an epoll instance with an eventfd for cross-thread wake-ups.
// The io layer's operations (sockets, pipes) register here too; until then it only sleeps and wakes.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "corio/core/detail/poller.hpp"
#include "corio/core/errors.hpp"

namespace corio::detail {
namespace {

class EpollPoller final : public Poller {
 public:
  EpollPoller() {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    wakefd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wakefd_ < 0) {
      int err = errno;
      ::close(epfd_);
      throw std::system_error(err, std::generic_category(), "eventfd");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // null marks the wake-up fd
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev);
  }
  ~EpollPoller() override {
    ::close(wakefd_);
    ::close(epfd_);
  }

  Backend backend() const noexcept override { return Backend::epoll; }

  std::size_t poll(std::int64_t timeout_ns) override {
    int timeout_ms;
    if (timeout_ns < 0)
      timeout_ms = -1;
    else if (timeout_ns == 0)
      timeout_ms = 0;
    else
      timeout_ms = static_cast<int>(std::min<std::int64_t>((timeout_ns + 999'999) / 1'000'000, 1 << 30));
    epoll_event events[128];
    int n = ::epoll_wait(epfd_, events, 128, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return 0;
      throw std::system_error(errno, std::generic_category(), "epoll_wait");
    }
    std::size_t handled = 0;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        std::uint64_t v;
        while (::read(wakefd_, &v, sizeof v) > 0) {
        }
        continue;
      }
      ++handled;
    }
    return handled;
  }

  void wake() noexcept override {
    std::uint64_t one = 1;
    ssize_t r = ::write(wakefd_, &one, sizeof one);
    (void)r;
  }

 private:
  int epfd_ = -1;
  int wakefd_ = -1;
};

}  // namespace

std::unique_ptr<Poller> make_poller(Backend requested, bool /*debug*/) {
  if (requested == Backend::io_uring)
    throw RuntimeError("the io_uring backend is not available in this build (issue: io_uring backend)");
  return std::make_unique<EpollPoller>();
}

}  // namespace corio::detail
