// Choosing the loop's backend.
#include <cstring>
#include <memory>
#include <string>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/log.hpp"
#include "corio/io/backend.hpp"

namespace corio::detail {

std::unique_ptr<IoBackend> make_epoll_backend();
std::unique_ptr<IoBackend> make_uring_backend(int& err);

// automatic means epoll for now: the io_uring backend works (the whole suite runs on it) but does not
// beat epoll yet, so it is chosen explicitly (RunOptions.backend or CORIO_BACKEND=io_uring).
std::unique_ptr<Poller> make_poller(Backend requested, bool debug) {
  if (requested == Backend::io_uring) {
    int err = 0;
    if (auto be = make_uring_backend(err)) return be;
    throw RuntimeError(std::string("the io_uring backend was requested but the kernel refuses io_uring: ") +
                       std::strerror(err) + " (seccomp, kernel.io_uring_disabled, or an old kernel)");
  }
  (void)debug;
  return make_epoll_backend();
}

IoBackend& io_backend() { return static_cast<IoBackend&>(get_running_loop().poller()); }

}  // namespace corio::detail
