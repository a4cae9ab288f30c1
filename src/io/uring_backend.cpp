// The io_uring backend, first form: the readiness core with io_uring poll requests as its mechanism. An
// op that must wait arms a one-shot IORING_OP_POLL_ADD for its descriptor and direction (level-checked
// when armed, so no retry list is needed); the completion retries the waiting ops and re-arms if some are
// left. Submissions are batched: prepared during a turn, submitted once when the loop polls. The wake-up
// eventfd and the signalfd use multishot polls. Closing a descriptor cancels its polls first
// (IORING_ASYNC_CANCEL_FD), since an armed poll keeps the file open.
//
// Not yet here (the performance design): multishot receive into a provided-buffer ring, sends
// and accepts as io_uring operations. The seam (completion-style IoOp) is ready for them.
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>

#include "corio/core/errors.hpp"
#include "readiness_core.hpp"

namespace corio::detail {
namespace {

class UringBackend final : public ReadinessCore {
 public:
  // Returns null with errno set when the kernel refuses io_uring (seccomp, io_uring_disabled, ENOSYS).
  static std::unique_ptr<UringBackend> create(int& err) {
    auto ring = std::make_unique<io_uring>();
    // Optional setup flags dropped step by step until the kernel accepts.
    const unsigned attempts[] = {IORING_SETUP_COOP_TASKRUN, 0};
    int rc = -EINVAL;
    for (unsigned flags : attempts) {
      rc = io_uring_queue_init(4096, ring.get(), flags);
      if (rc == 0 || (rc != -EINVAL && rc != -EOPNOTSUPP)) break;
    }
    if (rc < 0) {
      err = -rc;
      return nullptr;
    }
    int wakefd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wakefd < 0) {
      err = errno;
      io_uring_queue_exit(ring.get());
      return nullptr;
    }
    return std::make_unique<UringBackend>(std::move(ring), wakefd);
  }

  UringBackend(std::unique_ptr<io_uring> ring, int wakefd) noexcept
      : ReadinessCore(wakefd), ring_(std::move(ring)) {
    arm_multishot(wakefd, kWakeKey);
  }
  ~UringBackend() override {
    shutdown();
    io_uring_queue_exit(ring_.get());
  }

  Backend backend() const noexcept override { return Backend::io_uring; }

 protected:
  int watch(FdEntry& e, int fd, bool read_side, bool) noexcept override {
    bool& armed = read_side ? e.armed_in : e.armed_out;
    if (armed) return 0;
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_poll_add(sqe, fd, read_side ? (POLLIN | POLLRDHUP) : POLLOUT);
    io_uring_sqe_set_data64(sqe, encode(fd, e.gen, read_side));
    armed = true;
    ++armed_;
    return 0;
  }

  void unwatch(FdEntry& e, int fd) noexcept override {
    if (!e.armed_in && !e.armed_out) return;
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, kIgnoreKey);
    io_uring_submit(ring_.get());  // before the caller closes fd: the polls hold the file open
    armed_ -= e.armed_in + e.armed_out;
    e.armed_in = e.armed_out = false;
    ++e.gen;  // their completions (-ECANCELED) will not match any more
  }

  bool has_watches() const noexcept override { return armed_ > 0 || io_uring_sq_ready(ring_.get()) > 0; }

  void watch_signals(int sigfd) override { arm_multishot(sigfd, kSignalKey); }

  std::size_t wait(std::int64_t timeout_ns) override {
    io_uring_cqe* cqe = nullptr;
    int rc;
    if (timeout_ns < 0) {
      rc = io_uring_submit_and_wait(ring_.get(), 1);
    } else if (timeout_ns == 0) {
      rc = io_uring_submit(ring_.get());
    } else {
      __kernel_timespec ts{};
      ts.tv_sec = timeout_ns / 1'000'000'000;
      ts.tv_nsec = timeout_ns % 1'000'000'000;
      rc = io_uring_submit_and_wait_timeout(ring_.get(), &cqe, 1, &ts, nullptr);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
      throw std::system_error(-rc, std::generic_category(), "io_uring_enter");
    std::size_t handled = 0;
    // Handling may prepare new requests (re-arms): take completions one at a time.
    while (io_uring_peek_cqe(ring_.get(), &cqe) == 0 && cqe) {
      std::uint64_t key = io_uring_cqe_get_data64(cqe);
      int res = cqe->res;
      bool more = cqe->flags & IORING_CQE_F_MORE;
      io_uring_cqe_seen(ring_.get(), cqe);
      if (key == kIgnoreKey) continue;
      if (key == kWakeKey) {
        drain_wakefd();
        if (!more) arm_multishot(wakefd_, kWakeKey);
        continue;
      }
      if (key == kSignalKey) {
        handled += read_signals();
        if (!more && sigfd_ >= 0) arm_multishot(sigfd_, kSignalKey);
        continue;
      }
      int fd;
      std::uint32_t gen;
      bool read_side;
      decode(key, fd, gen, read_side);
      FdEntry* e = entry_if(fd);
      if (!e || e->gen != gen) continue;  // a poll of a descriptor since closed
      bool& armed = read_side ? e->armed_in : e->armed_out;
      if (armed) {
        armed = false;
        --armed_;
      }
      bool hup = res < 0 || (res & (POLLERR | POLLHUP | POLLRDHUP));
      handled += on_ready(fd, read_side, !read_side, hup && read_side);
      // Ops still waiting in this direction (their retry hit EAGAIN again): arm once more.
      if (FdEntry* again = entry_if(fd);
          again && again->gen == gen && !(read_side ? again->readers : again->writers).empty())
        watch(*again, fd, read_side, true);
    }
    return handled;
  }

 private:
  static constexpr std::uint64_t kSpecial = std::uint64_t{1} << 63;
  static constexpr std::uint64_t kWakeKey = kSpecial | 1;
  static constexpr std::uint64_t kSignalKey = kSpecial | 2;
  static constexpr std::uint64_t kIgnoreKey = kSpecial | 3;

  static std::uint64_t encode(int fd, std::uint32_t gen, bool read_side) noexcept {
    return (static_cast<std::uint64_t>(gen & 0x7fffffffu) << 32) | (static_cast<std::uint64_t>(fd) << 1) |
           (read_side ? 1u : 0u);
  }
  static void decode(std::uint64_t key, int& fd, std::uint32_t& gen, bool& read_side) noexcept {
    read_side = key & 1;
    fd = static_cast<int>((key & 0xffffffffu) >> 1);
    gen = static_cast<std::uint32_t>(key >> 32);
  }

  io_uring_sqe* get_sqe() noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
    while (!sqe) {  // the submission queue is full: flush it
      io_uring_submit(ring_.get());
      sqe = io_uring_get_sqe(ring_.get());
    }
    return sqe;
  }
  void arm_multishot(int fd, std::uint64_t key) noexcept {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_poll_multishot(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, key);
  }

  std::unique_ptr<io_uring> ring_;
  std::size_t armed_ = 0;  // fd polls in flight
};

}  // namespace

std::unique_ptr<IoBackend> make_uring_backend(int& err) { return UringBackend::create(err); }

}  // namespace corio::detail
