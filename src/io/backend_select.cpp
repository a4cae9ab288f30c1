// Choosing the loop's backend.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/log.hpp"
#include "corio/io/backend.hpp"

namespace corio::detail {

std::unique_ptr<IoBackend> make_epoll_backend();
std::unique_ptr<IoBackend> make_uring_backend(int& err, std::string& flags_used);

// automatic prefers io_uring and falls back to epoll where the kernel refuses it (seccomp in containers,
// kernel.io_uring_disabled, an old kernel: EPERM, ENOSYS, EINVAL), saying so in one debug-level line.
// io_uring asked for explicitly is an error there.
std::unique_ptr<Poller> make_poller(Backend requested, bool debug) {
  if (requested == Backend::epoll) return make_epoll_backend();
  int err = 0;
  std::string flags;
  if (auto be = make_uring_backend(err, flags)) {
    if (debug) log("io_uring backend (setup flags: " + flags + ")");
    return be;
  }
  // Only a refusal is put down to the kernel's policy; anything else (out of descriptors or memory) is
  // named as it is.
  const bool refused = err == EPERM || err == ENOSYS || err == EINVAL || err == EACCES;
  std::string why = refused ? std::string("the kernel refuses io_uring: ") + std::strerror(err) +
                                  " (seccomp, kernel.io_uring_disabled, or an old kernel)"
                            : std::string("io_uring setup failed: ") + std::strerror(err);
  if (requested == Backend::io_uring) throw RuntimeError("the io_uring backend was requested but " + why);
  if (debug) log(why + "; using the epoll backend");
  return make_epoll_backend();
}

void abort_accepted(int fd) noexcept {
  if (fd < 0) return;
  const linger reset{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  ::close(fd);
}

IoBackend& io_backend() { return static_cast<IoBackend&>(get_running_loop().poller()); }

}  // namespace corio::detail
