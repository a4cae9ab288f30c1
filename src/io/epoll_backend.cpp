// The epoll backend: the readiness core with epoll as its mechanism. Edge-triggered: every descriptor is
// registered once, for both directions, the first time an operation on it has to wait; an op submitted
// without a fresh EAGAIN is retried after the next poll, since no new edge may come for it.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <system_error>

#include "readiness_core.hpp"

namespace corio::detail {
namespace {

class EpollBackend final : public ReadinessCore {
 public:
  // The descriptors are made before the object, so the constructor cannot fail half-way.
  static std::unique_ptr<EpollBackend> create() {
    int epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    int wakefd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wakefd < 0) {
      int err = errno;
      ::close(epfd);
      throw std::system_error(err, std::generic_category(), "eventfd");
    }
    return std::make_unique<EpollBackend>(epfd, wakefd);
  }
  EpollBackend(int epfd, int wakefd) noexcept : ReadinessCore(wakefd), epfd_(epfd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeKey;
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd, &ev);
  }
  ~EpollBackend() override {
    shutdown();
    ::close(epfd_);
  }

  Backend backend() const noexcept override { return Backend::epoll; }

 protected:
  int watch(FdEntry& e, int fd, bool, bool just_tried) noexcept override {
    if (!e.registered) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
      ev.data.u64 = static_cast<std::uint64_t>(fd);
      if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) return errno;
      e.registered = true;
      ++registered_;
    }
    if (!just_tried) dirty_.push_back(fd);
    return 0;
  }

  void unwatch(FdEntry& e, int fd) noexcept override {
    if (!e.registered) return;
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
    e.registered = false;
    --registered_;
  }

  void watch_signals(int sigfd) override {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kSignalKey;
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, sigfd, &ev);
  }

  std::size_t wait(std::int64_t timeout_ns) override {
    int timeout_ms;
    if (timeout_ns < 0)
      timeout_ms = -1;
    else if (timeout_ns == 0)
      timeout_ms = 0;
    else
      timeout_ms = static_cast<int>(std::min<std::int64_t>((timeout_ns + 999'999) / 1'000'000, 1 << 30));
    epoll_event events[256];
    int n = ::epoll_wait(epfd_, events, 256, timeout_ms);
    if (n < 0) {
      if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "epoll_wait");
      return 0;
    }
    std::size_t handled = 0;
    for (int i = 0; i < n; ++i) {
      std::uint64_t key = events[i].data.u64;
      if (key == kSignalKey) {
        handled += read_signals();
      } else if (key == kWakeKey) {
        drain_wakefd();
      } else {
        std::uint32_t ev = events[i].events;
        // (EPOLLPRI, TCP urgent data, counts with the hang-ups: a read stops at the urgent mark, so from
        // then on a short read no longer means that nothing is left.)
        handled += on_ready(static_cast<int>(key), ev & EPOLLIN, ev & EPOLLOUT,
                            ev & (EPOLLERR | EPOLLHUP | EPOLLRDHUP | EPOLLPRI));
      }
    }
    return handled;
  }

 private:
  static constexpr std::uint64_t kWakeKey = ~std::uint64_t{0};
  static constexpr std::uint64_t kSignalKey = ~std::uint64_t{0} - 1;

  int epfd_;
};

}  // namespace

std::unique_ptr<IoBackend> make_epoll_backend() { return EpollBackend::create(); }

}  // namespace corio::detail
