// wait_readable / wait_writable on a descriptor corio does not own, and forgetting it before it is closed.
#include "corio/net/fd.hpp"

#include <unistd.h>

#include <string>

#include "corio/core/detail/runtime.hpp"
#include "corio/io/backend.hpp"
#include "corio/io/operations.hpp"
#include "corio/net/errors.hpp"

namespace corio {

namespace {
Task<> wait_fd(int fd, detail::OpCode code, const char* what) {
  // However the wait ends, the backend does not keep watching the descriptor once nobody waits on it: its
  // owner may close it with a plain ::close (asyncio's remove_reader unregisters it too).
  struct Release {
    int fd;
    ~Release() {
      if (detail::LoopCore::running_) detail::io_backend().release_idle(fd);
    }
  } release{fd};
  detail::IoAwaiter poll(code, fd);
  const std::int64_t r = co_await poll;
  if (r < 0) detail::throw_os_error(static_cast<int>(-r), std::string(what) + "(" + std::to_string(fd) + ")");
}
}  // namespace

Task<> wait_readable(int fd) { return wait_fd(fd, detail::OpCode::poll_in, "wait_readable"); }
Task<> wait_writable(int fd) { return wait_fd(fd, detail::OpCode::poll_out, "wait_writable"); }

void forget_fd(int fd) noexcept {
  if (fd >= 0 && detail::LoopCore::running_) detail::io_backend().forget(fd);
}

void close_fd(int fd) noexcept { detail::close_fd(fd); }

}  // namespace corio
