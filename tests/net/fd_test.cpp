// wait_readable / wait_writable on descriptors corio does not own (asyncio's add_reader / add_writer), and
// forget_fd / close_fd.
#include "corio/net/fd.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "corio/core/errors.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/wait_for.hpp"
#include "corio/net/errors.hpp"
#include "net_test_util.hpp"

using corio::Task;
using corio_test::run_guarded;

namespace {

// A non-blocking pipe; the ends still open at the end are forgotten by the loop and closed.
struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int p[2];
    if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    r = p[0];
    w = p[1];
  }
  ~Pipe() {
    corio::close_fd(r);
    corio::close_fd(w);
  }
};

Task<> mark_when_readable(int fd, bool& ready) {
  co_await corio::wait_readable(fd);
  ready = true;
}

// A wait for p's read end stays pending while nothing is written, and ends once a byte is.
Task<> waits_until_written(const Pipe& p) {
  bool ready = false;
  auto waiter = corio::create_task(mark_when_readable(p.r, ready));
  co_await corio_test::turns(3);
  EXPECT_FALSE(ready) << "nothing was written";
  EXPECT_EQ(::write(p.w, "x", 1), 1);
  co_await corio::wait_for(waiter, std::chrono::seconds(5));
  EXPECT_TRUE(ready);
}

TEST(Fd, WaitReadableReturnsOnceDataArrivesAndReadsNothing) {
  run_guarded([]() -> Task<> {
    Pipe p;
    bool ready = false;
    auto waiter = corio::create_task(mark_when_readable(p.r, ready));
    co_await corio_test::turns(5);
    EXPECT_FALSE(ready);  // nothing written: it waits
    EXPECT_EQ(::write(p.w, "x", 1), 1);
    co_await waiter;
    EXPECT_TRUE(ready);
    char c = 0;
    EXPECT_EQ(::read(p.r, &c, 1), 1);  // the wait took nothing
    EXPECT_EQ(c, 'x');
    // Readable already: the next wait returns without anything new being written.
    EXPECT_EQ(::write(p.w, "y", 1), 1);
    co_await corio::wait_readable(p.r);
    // The peer gone: readable too (the read then says EOF).
    EXPECT_EQ(::read(p.r, &c, 1), 1);
    ::close(std::exchange(p.w, -1));
    co_await corio::wait_readable(p.r);
    EXPECT_EQ(::read(p.r, &c, 1), 0);
  }());
}

TEST(Fd, WaitWritableWaitsForRoomInAFullPipe) {
  run_guarded([]() -> Task<> {
    Pipe p;
    co_await corio::wait_writable(p.w);  // empty pipe: room at once
    const std::string chunk(4096, 'z');
    std::size_t queued = 0;
    for (;;) {  // fill it
      const ssize_t n = ::write(p.w, chunk.data(), chunk.size());
      if (n < 0) break;
      queued += static_cast<std::size_t>(n);
    }
    CO_ASSERT(errno == EAGAIN);
    auto waiter = corio::create_task(corio::wait_writable(p.w));
    co_await corio_test::turns(5);
    EXPECT_FALSE(waiter.done());  // full: it waits
    std::string sink(queued, '\0');
    EXPECT_EQ(::read(p.r, sink.data(), sink.size()), static_cast<ssize_t>(queued));
    co_await waiter;
  }());
}

TEST(Fd, ACancelledWaitEndsAtOnceAndTheNextOneWorks) {
  run_guarded([]() -> Task<> {
    Pipe p;
    auto waiter = corio::create_task(corio::wait_readable(p.r));
    co_await corio_test::turns(2);
    waiter.cancel();
    CO_EXPECT_THROW_AS(co_await waiter, corio::CancelledError, e, (void)e);
    co_await waits_until_written(p);
  }());
}

// forget_fd before closing: a wait on the descriptor ends with OSError(ECANCELED), and a descriptor opened
// later under the same number is waited on afresh.
TEST(Fd, ForgetEndsAWaitAndFreesTheNumber) {
  run_guarded([]() -> Task<> {
    auto first = std::make_unique<Pipe>();
    const int number = first->r;
    auto waiter = corio::create_task(corio::wait_readable(first->r));
    co_await corio_test::turns(2);
    first.reset();  // close_fd: forgets, then closes
    CO_EXPECT_THROW_AS(co_await waiter, corio::OSError, e, EXPECT_EQ(e.code(), ECANCELED) << e.what());
    Pipe second;
    EXPECT_EQ(second.r, number);  // (the lowest free number again)
    co_await waits_until_written(second);
  }());
}

// Once no wait is pending, the loop no longer watches the descriptor: a plain ::close is fine, and a
// descriptor opened later under the same number is waited on afresh (on epoll the stale registration hung
// it).
TEST(Fd, APlainCloseAfterTheWaitLeavesNothingBehind) {
  run_guarded([]() -> Task<> {
    int number = -1;
    {
      int p[2];
      CO_ASSERT(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
      EXPECT_EQ(::write(p[1], "x", 1), 1);
      co_await corio::wait_readable(p[0]);
      ::close(p[0]);
      ::close(p[1]);
      number = p[0];
    }
    Pipe again;
    CO_ASSERT(again.r == number);
    co_await waits_until_written(again);
  }());
}

double thread_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// A wait forgotten (close_fd) in the turn it started leaves the loop idle: on epoll its descriptor stayed
// on the list of those to retry, which made every later poll return at once (a 200 ms sleep cost 200 ms of
// CPU). An idle loop's sleep costs next to none; a spinning one burns the whole of it.
TEST(Fd, AWaitForgottenInTheTurnItStartedLeavesTheLoopIdle) {
  run_guarded([]() -> Task<> {
    Pipe p;
    auto waiter = corio::create_task(corio::wait_readable(p.r));
    co_await corio::sleep(std::chrono::seconds(0));  // the waiter starts its wait, then this runs: same turn
    corio::close_fd(std::exchange(p.r, -1));
    CO_EXPECT_THROW_AS(co_await waiter, corio::OSError, e, EXPECT_EQ(e.code(), ECANCELED) << e.what());
    const double before = thread_cpu_seconds();
    co_await corio::sleep(std::chrono::milliseconds(200));
    EXPECT_LT(thread_cpu_seconds() - before, 0.1) << "the loop spun while it slept";
  }());
}

TEST(Fd, ADescriptorThatIsNotOpenIsEBADF) {
  run_guarded([]() -> Task<> {
    CO_EXPECT_THROW_AS(co_await corio::wait_readable(-1), corio::OSError, e, {
      EXPECT_EQ(e.code(), EBADF);
      EXPECT_NE(std::string(e.what()).find("wait_readable(-1)"), std::string::npos) << e.what();
    });
    int closed = -1;
    {
      Pipe p;
      closed = p.w;
    }
    CO_EXPECT_THROW_AS(co_await corio::wait_writable(closed), corio::OSError, e, EXPECT_EQ(e.code(), EBADF));
  }());
}

}  // namespace
