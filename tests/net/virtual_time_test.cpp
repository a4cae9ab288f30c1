// Virtual time with I/O (issue 2, item 12): under RunOptions{.virtual_time = true} the loop jumps its clock
// to the next timer only when nothing is ready and a zero-timeout poll finds no I/O. So a read whose data
// is there (or arrives while it waits) completes at once, and a timeout around a read that gets nothing
// fires after 30 virtual seconds in no real time.
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/wait_for.hpp"
#include "corio/net/stream.hpp"
#include "net_test_util.hpp"

using namespace std::chrono_literals;
using corio::Task;
using corio_test::Fd;
using corio_test::raw_send;

namespace {

constexpr corio::RunOptions kVirtual{.virtual_time = true};

// A connected non-blocking Unix socket pair: `ours` becomes a corio stream, `peer` stays a raw descriptor.
struct Pair {
  Fd ours, peer;
};

Pair socket_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
    throw std::runtime_error("socketpair");
  return Pair{Fd(fds[0]), Fd(fds[1])};
}

double loop_time() { return corio::get_running_loop().time(); }

}  // namespace

TEST(VirtualTime, DataAlreadyThereIsReadWithoutJumpingTheClock) {
  Pair p = socket_pair();
  raw_send(p.peer.get(), "already here");
  auto [data, advanced] = corio::run(
      [](int fd) -> Task<std::pair<std::string, double>> {
        auto [reader, writer] = corio::detail::make_stream(fd, true, "pair");
        double t0 = loop_time();
        std::string got = co_await corio::wait_for(reader.read(100), 30s);
        co_return std::pair{got, loop_time() - t0};
      }(p.ours.release()),
      kVirtual);
  EXPECT_EQ(data, "already here");
  EXPECT_LT(advanced, 1.0);
}

TEST(VirtualTime, DataArrivingWhileAReadWaitsIsReadWithoutJumpingTheClock) {
  Pair p = socket_pair();
  auto [data, advanced] = corio::run(
      [](int ours, int peer) -> Task<std::pair<std::string, double>> {
        auto [reader, writer] = corio::detail::make_stream(ours, true, "pair");
        double t0 = loop_time();
        auto read = corio::create_task(corio::wait_for(reader.read(100), 30s));
        co_await corio::sleep(0s);  // the read found nothing and waits on the socket, its 30 s timer set
        co_await corio::sleep(0s);  // a loop turn polled with the read's interest registered
        CO_ASSERT(!read.done());
        // Arrives while nothing is ready: the next turn's zero-timeout poll must see it before the clock
        // may jump to the 30 s timer (which would end the read with TimeoutError).
        raw_send(peer, "arrived late");
        std::string got = co_await read;
        co_return std::pair{got, loop_time() - t0};
      }(p.ours.release(), p.peer.get()),
      kVirtual);
  EXPECT_EQ(data, "arrived late");
  EXPECT_LT(advanced, 1.0);
}

TEST(VirtualTime, ReadThatGetsNothingTimesOutAfterThirtyVirtualSeconds) {
  Pair p = socket_pair();
  const auto wall0 = std::chrono::steady_clock::now();
  double advanced = corio::run(
      [](int fd) -> Task<double> {
        auto [reader, writer] = corio::detail::make_stream(fd, true, "pair");
        double t0 = loop_time();
        bool timed_out = false;
        try {
          (void)co_await corio::wait_for(reader.read(100), 30s);
        } catch (const corio::TimeoutError&) {
          timed_out = true;
        }
        CO_ASSERT(timed_out);
        co_return loop_time() - t0;
      }(p.ours.release()),
      kVirtual);
  EXPECT_GE(advanced, 30.0);
  EXPECT_LT(advanced, 31.0);
  // A bound, not a synchronisation: without virtual time this test would take 30 s.
  EXPECT_LT(std::chrono::steady_clock::now() - wall0, 10s);
}
