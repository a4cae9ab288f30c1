// EventLoop::add_signal_handler / remove_signal_handler, and run()'s Ctrl-C handling (SIGINT cancels the
// main task, cleanup runs, the process then dies of SIGINT).
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/sync/event.hpp"
#include "corio/sync/thread.hpp"
#include "process_test_util.hpp"

using namespace std::chrono_literals;
using corio::Task;
using corio_proc_test::run_guarded;

namespace {

bool blocked_here(int signo) {
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, nullptr, &cur);
  return sigismember(&cur, signo) == 1;
}

// ---------------------------------------------------------------- add/remove_signal_handler

Task<> handler_runs_on_the_loop_repeatedly() {
  corio::EventLoop& loop = corio::get_running_loop();
  corio::Event got;
  int count = 0;
  bool on_loop = true;
  loop.add_signal_handler(SIGUSR1, [&] {
    ++count;
    on_loop = on_loop && loop.is_running() && &corio::get_running_loop() == &loop;
    got.set();
  });
  EXPECT_TRUE(blocked_here(SIGUSR1));
  for (int i = 1; i <= 5; ++i) {
    ::kill(::getpid(), SIGUSR1);
    co_await got.wait();
    got.clear();
    EXPECT_EQ(count, i);
  }
  EXPECT_TRUE(on_loop);
  EXPECT_TRUE(loop.remove_signal_handler(SIGUSR1));
  EXPECT_FALSE(loop.remove_signal_handler(SIGUSR1));
  EXPECT_FALSE(blocked_here(SIGUSR1));
}

// The handler is one object for every signal: a mutable lambda's state carries over (each signal ran a
// fresh copy of it, so its count stayed 1), and a move-only handler is accepted (it did not compile).
Task<> handler_state_carries_over_between_signals() {
  corio::EventLoop& loop = corio::get_running_loop();
  corio::Event got;
  std::vector<int> seen;
  loop.add_signal_handler(SIGUSR1, [&, n = 0, owned = std::make_unique<int>(10)]() mutable {
    seen.push_back(++n + *owned);
    got.set();
  });
  for (int i = 0; i < 3; ++i) {
    ::kill(::getpid(), SIGUSR1);
    co_await got.wait();
    got.clear();
  }
  EXPECT_EQ(seen, (std::vector<int>{11, 12, 13}));
  EXPECT_TRUE(loop.remove_signal_handler(SIGUSR1));
}

Task<> handler_runs_when_sent_from_another_thread() {
  corio::EventLoop& loop = corio::get_running_loop();
  corio::Event got;
  int count = 0;
  std::thread::id loop_thread = std::this_thread::get_id();
  bool on_loop_thread = true;
  loop.add_signal_handler(SIGUSR1, [&] {
    ++count;
    on_loop_thread = on_loop_thread && std::this_thread::get_id() == loop_thread;
    got.set();
  });
  // The sending thread starts after the handler was added, so it inherits the loop thread's signal mask:
  // process-directed signals can only be taken through the loop's signalfd.
  for (int i = 1; i <= 3; ++i) {
    std::thread sender([] { ::kill(::getpid(), SIGUSR1); });
    co_await got.wait();  // the loop sleeps in the backend until the signal arrives
    got.clear();
    sender.join();
    EXPECT_EQ(count, i);
  }
  // Directed at the loop's thread itself.
  pthread_t self = ::pthread_self();
  std::thread sender([self] { ::pthread_kill(self, SIGUSR1); });
  co_await got.wait();
  sender.join();
  EXPECT_EQ(count, 4);
  EXPECT_TRUE(on_loop_thread);
  EXPECT_TRUE(loop.remove_signal_handler(SIGUSR1));
}

Task<> replacing_a_handler() {
  corio::EventLoop& loop = corio::get_running_loop();
  corio::Event got;
  int first = 0, second = 0;
  loop.add_signal_handler(SIGUSR1, [&] {
    ++first;
    got.set();
  });
  loop.add_signal_handler(SIGUSR1, [&] {
    ++second;
    got.set();
  });
  ::kill(::getpid(), SIGUSR1);
  co_await got.wait();
  EXPECT_EQ(first, 0);
  EXPECT_EQ(second, 1);
  EXPECT_TRUE(loop.remove_signal_handler(SIGUSR1));
  EXPECT_FALSE(loop.remove_signal_handler(SIGUSR1));
}

Task<> two_signals_two_handlers() {
  corio::EventLoop& loop = corio::get_running_loop();
  corio::Event got1, got2;
  int n1 = 0, n2 = 0;
  loop.add_signal_handler(SIGUSR1, [&] {
    ++n1;
    got1.set();
  });
  loop.add_signal_handler(SIGUSR2, [&] {
    ++n2;
    got2.set();
  });
  ::kill(::getpid(), SIGUSR2);
  co_await got2.wait();
  EXPECT_EQ(n1, 0);
  EXPECT_EQ(n2, 1);
  ::kill(::getpid(), SIGUSR1);
  co_await got1.wait();
  EXPECT_EQ(n1, 1);
  EXPECT_EQ(n2, 1);
  // Removing one leaves the other working.
  EXPECT_TRUE(loop.remove_signal_handler(SIGUSR1));
  got2.clear();
  ::kill(::getpid(), SIGUSR2);
  co_await got2.wait();
  EXPECT_EQ(n2, 2);
  EXPECT_TRUE(loop.remove_signal_handler(SIGUSR2));
}

Task<> handler_removed_inside_itself() {
  corio::EventLoop& loop = corio::get_running_loop();
  corio::Event got;
  int count = 0;
  bool removed = false;
  loop.add_signal_handler(SIGUSR1, [&] {
    ++count;
    removed = loop.remove_signal_handler(SIGUSR1);
    got.set();
  });
  ::kill(::getpid(), SIGUSR1);
  co_await got.wait();
  EXPECT_EQ(count, 1);
  EXPECT_TRUE(removed);
  EXPECT_FALSE(loop.remove_signal_handler(SIGUSR1));
}

Task<> invalid_signals() {
  corio::EventLoop& loop = corio::get_running_loop();
  for (int bad : {0, -1, SIGKILL, SIGSTOP, NSIG, 1000}) {
    PCO_EXPECT_THROW_AS(loop.add_signal_handler(bad, [] {}), corio::RuntimeError, e, (void)e);
  }
  // The C library's own real-time signals (glibc: 32 and 33, below SIGRTMIN): refused the same way, naming
  // the signal (sigaction refused them later with a bare std::system_error).
  for (int reserved = __SIGRTMIN; reserved < SIGRTMIN; ++reserved) {
    PCO_EXPECT_THROW_AS(loop.add_signal_handler(reserved, [] {}), corio::RuntimeError, e, {
      EXPECT_NE(std::string(e.what()).find("invalid signal " + std::to_string(reserved)), std::string::npos)
          << e.what();
    });
  }
  EXPECT_GT(SIGRTMIN, __SIGRTMIN);  // (else the loop above checked nothing)
  EXPECT_FALSE(loop.remove_signal_handler(SIGUSR1));
  co_return;
}

Task<> add_then_leave_installed() {
  corio::EventLoop& loop = corio::get_running_loop();
  loop.add_signal_handler(SIGUSR2, [] {});
  EXPECT_TRUE(blocked_here(SIGUSR2));
  co_return;
}

Task<> add_and_remove_usr2() {
  corio::EventLoop& loop = corio::get_running_loop();
  loop.add_signal_handler(SIGUSR2, [] {});
  EXPECT_TRUE(blocked_here(SIGUSR2));
  EXPECT_TRUE(loop.remove_signal_handler(SIGUSR2));
  co_return;
}

// ---------------------------------------------------------------- run() and SIGINT (in a forked child)

// What the forked child's main task does.
enum class ChildMode { rethrow, swallow, stuck_cleanup, done_then_stuck_leftover, stopped_then_stuck };

Task<> leftover_task() {
  bool cancelled = false;
  try {
    co_await corio::sleep(1h);
  } catch (const corio::CancelledError&) {
    cancelled = true;
  }
  if (cancelled) {
    co_await corio::sleep(0s);  // cleanup that needs the loop
    std::printf("leftover cleanup\n");
    throw corio::CancelledError();
  }
}

// Cancelled when run() ends, this cleanup never finishes: only a Ctrl-C gets out of it.
Task<> stuck_leftover() {
  try {
    co_await corio::sleep(1h);
  } catch (const corio::CancelledError&) {
  }
  std::printf("leftover stuck in its cleanup\n");
  std::fflush(stdout);
  co_await corio::sleep(1h);
}

Task<int> sigint_child_main(ChildMode mode) {
  if (mode == ChildMode::done_then_stuck_leftover) {
    (void)corio::create_task(stuck_leftover());
    co_await corio::sleep(0s);  // it starts
    co_return 5;                // main is done: run() cancels the leftover, whose cleanup hangs
  }
  if (mode == ChildMode::stopped_then_stuck) {
    corio::get_running_loop().stop();  // run() throws RuntimeError, then cancels main and waits for it
    try {
      co_await corio::sleep(1h);
    } catch (const corio::CancelledError&) {
    }
    std::printf("main stuck in its cleanup\n");
    std::fflush(stdout);
    co_await corio::sleep(1h);  // only the Ctrl-C gets out of it (it cancels main)
    co_return 6;
  }
  auto other = corio::create_task(leftover_task());
  co_await corio::sleep(0s);  // let the leftover start
  std::printf("ready\n");
  std::fflush(stdout);
  bool cancelled = false;
  try {
    co_await corio::sleep(1h);
  } catch (const corio::CancelledError&) {
    cancelled = true;
  }
  if (!cancelled) co_return 1;
  if (mode == ChildMode::stuck_cleanup) {
    std::printf("cleaning\n");
    std::fflush(stdout);
    try {
      co_await corio::sleep(1h);  // a cleanup that never ends: only a second Ctrl-C gets out of it
    } catch (const corio::CancelledError&) {
      std::printf("cleanup cancelled\n");
    }
    co_return 2;
  }
  co_await corio::sleep(0s);      // cleanup that needs the loop
  std::printf("main cleanup\n");  // deliberately not flushed: run() must not lose it
  if (mode == ChildMode::rethrow) throw corio::CancelledError();
  co_return 42;
}

struct ChildResult {
  std::string out;
  int status = 0;
};

// Forks a child that runs sigint_child_main under corio::run with stdout on a pipe; each time it printed
// one of `triggers` (in order), sends it SIGINT; then collects its output and status. The child starts
// with SIGINT at its default disposition and unblocked, whatever the test process has. With
// `program_thread`, the child first starts a thread of its own (every signal unblocked), which stays
// until the child exits.
ChildResult run_sigint_child(ChildMode mode, std::vector<std::string> triggers = {"ready\n"},
                             bool program_thread = false) {
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    std::signal(SIGINT, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (program_thread)
      std::thread([] {
        for (;;) ::pause();
      }).detach();
    int code = 0;
    try {
      code = corio::run(sigint_child_main(mode));
    } catch (const corio::CancelledError&) {
      std::printf("run threw CancelledError\n");
      code = 3;
    } catch (...) {
      code = 4;
    }
    std::printf("run returned %d\n", code);
    std::fflush(nullptr);
    ::_exit(code);
  }
  ::close(fds[1]);
  ChildResult res;
  std::size_t sent = 0;
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    int r = ::poll(&p, 1, 10000);  // hang guard only
    if (r <= 0) {
      ADD_FAILURE() << "child hung; output so far: " << res.out;
      ::kill(pid, SIGKILL);
      break;
    }
    char buf[256];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    res.out.append(buf, static_cast<std::size_t>(n));
    while (sent < triggers.size() && res.out.find(triggers[sent]) != std::string::npos) {
      ++sent;
      ::kill(pid, SIGINT);
    }
  }
  ::close(fds[0]);
  EXPECT_EQ(::waitpid(pid, &res.status, 0), pid);
  return res;
}

}  // namespace

TEST(Signals, HandlerRunsOnTheLoopRepeatedly) { run_guarded(handler_runs_on_the_loop_repeatedly()); }
TEST(Signals, HandlerStateCarriesOverBetweenSignals) {
  run_guarded(handler_state_carries_over_between_signals());
}
TEST(Signals, HandlerRunsWhenSentFromAnotherThread) {
  run_guarded(handler_runs_when_sent_from_another_thread());
}
TEST(Signals, ReplacingAHandler) { run_guarded(replacing_a_handler()); }
TEST(Signals, TwoSignalsTwoHandlers) { run_guarded(two_signals_two_handlers()); }
TEST(Signals, HandlerRemovedInsideItself) { run_guarded(handler_removed_inside_itself()); }
TEST(Signals, InvalidSignalsAreRefused) { run_guarded(invalid_signals()); }

TEST(Signals, ClosingTheLoopUnblocksItsSignals) {
  ASSERT_FALSE(blocked_here(SIGUSR2));
  run_guarded(add_then_leave_installed());
  EXPECT_FALSE(blocked_here(SIGUSR2));
}

TEST(Signals, SignalBlockedBeforeStaysBlocked) {
  // A program that blocks a signal itself keeps it blocked after the loop used and released it.
  sigset_t usr2, old;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &usr2, &old), 0);
  run_guarded(add_and_remove_usr2());
  EXPECT_TRUE(blocked_here(SIGUSR2));
  run_guarded(add_then_leave_installed());
  EXPECT_TRUE(blocked_here(SIGUSR2));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

namespace {
Task<> sigint_state_inside(bool expect_taken) {
  EXPECT_EQ(blocked_here(SIGINT), expect_taken);
  co_return;
}
}  // namespace

TEST(Signals, RunTakesSigintOnlyAtDefaultDisposition) {
  ASSERT_EQ(std::signal(SIGINT, SIG_DFL), SIG_DFL);
  run_guarded(sigint_state_inside(true));
  EXPECT_FALSE(blocked_here(SIGINT));
  EXPECT_EQ(std::signal(SIGINT, SIG_DFL), SIG_DFL);  // given back as it was

  std::signal(SIGINT, SIG_IGN);  // the program handles SIGINT itself: run() leaves it alone
  run_guarded(sigint_state_inside(false));
  EXPECT_EQ(std::signal(SIGINT, SIG_DFL), SIG_IGN);
}

TEST(Signals, SigintCancelsMainCleansUpAndDiesOfSigint) {
  ChildResult r = run_sigint_child(ChildMode::rethrow);
  EXPECT_TRUE(WIFSIGNALED(r.status)) << "status " << r.status << ", output:\n" << r.out;
  if (WIFSIGNALED(r.status)) {
    EXPECT_EQ(WTERMSIG(r.status), SIGINT);
  }
  // Both the main task's and the leftover task's cleanup ran (and were not lost in stdio's buffer).
  EXPECT_EQ(r.out, "ready\nmain cleanup\nleftover cleanup\n");
}

// With a thread of the program's own that has SIGINT unblocked (a logger, a library's pool, started
// before run()), a Ctrl-C sent to the process goes to that thread, the loop's blocking it: it is handed on
// to the loop, so main is cancelled and cleans up as without the thread. The thread used to take it with
// the default action: the program died at once, with no cleanup ("ready\n" was all it printed).
TEST(Signals, SigintWithAProgramThreadStillCancelsMainAndCleansUp) {
  ChildResult r = run_sigint_child(ChildMode::rethrow, {"ready\n"}, /*program_thread=*/true);
  EXPECT_TRUE(WIFSIGNALED(r.status)) << "status " << r.status << ", output:\n" << r.out;
  if (WIFSIGNALED(r.status)) {
    EXPECT_EQ(WTERMSIG(r.status), SIGINT);
  }
  EXPECT_EQ(r.out, "ready\nmain cleanup\nleftover cleanup\n");
}

TEST(Signals, SigintSwallowedByMainReturnsNormally) {
  ChildResult r = run_sigint_child(ChildMode::swallow);
  ASSERT_TRUE(WIFEXITED(r.status)) << "status " << r.status << ", output:\n" << r.out;
  EXPECT_EQ(WEXITSTATUS(r.status), 42);
  EXPECT_EQ(r.out, "ready\nmain cleanup\nleftover cleanup\nrun returned 42\n");
}

TEST(Signals, SecondSigintEndsAStuckCleanup) {
  ChildResult r = run_sigint_child(ChildMode::stuck_cleanup, {"ready\n", "cleaning\n"});
  EXPECT_TRUE(WIFSIGNALED(r.status)) << "status " << r.status << ", output:\n" << r.out;
  if (WIFSIGNALED(r.status)) {
    EXPECT_EQ(WTERMSIG(r.status), SIGINT);
  }
  EXPECT_EQ(r.out, "ready\ncleaning\n");
}

// A Ctrl-C after the main task is done, while the tasks run() cancelled are still cleaning up, has nothing
// to cancel: it ends the program at once, as a second Ctrl-C does (asyncio raises KeyboardInterrupt out of
// the cleanup). It used to be swallowed: the process went on, here for ever, and then exited 0.
TEST(Signals, SigintAfterMainIsDoneEndsTheCleanup) {
  ChildResult r = run_sigint_child(ChildMode::done_then_stuck_leftover, {"leftover stuck in its cleanup\n"});
  EXPECT_TRUE(WIFSIGNALED(r.status)) << "status " << r.status << ", output:\n" << r.out;
  if (WIFSIGNALED(r.status)) {
    EXPECT_EQ(WTERMSIG(r.status), SIGINT);
  }
  EXPECT_EQ(r.out, "leftover stuck in its cleanup\n");
}

// run() on its error path (main stopped the loop before it was done) cancels main and waits for it, like
// the normal path; a Ctrl-C taken meanwhile ends the process there too. It was swallowed: run() threw and
// the program went on with the interrupt lost.
TEST(Signals, SigintDuringTheCleanupAfterAStoppedLoopEndsTheProgram) {
  ChildResult r = run_sigint_child(ChildMode::stopped_then_stuck, {"main stuck in its cleanup\n"});
  EXPECT_TRUE(WIFSIGNALED(r.status)) << "status " << r.status << ", output:\n" << r.out;
  if (WIFSIGNALED(r.status)) {
    EXPECT_EQ(WTERMSIG(r.status), SIGINT);
  }
  EXPECT_EQ(r.out, "main stuck in its cleanup\n");
}

// A loop on another thread than the main one cannot handle signals: the signal would be blocked on its
// thread only, and a process-directed one would end the program through another thread. RuntimeError, as
// asyncio's add_signal_handler raises off the main thread.
TEST(Signals, AddingAHandlerOffTheMainThreadThrows) {
  std::string what;
  std::thread([&what] {
    corio::run([](std::string& what) -> Task<> {
      try {
        corio::get_running_loop().add_signal_handler(SIGUSR1, [] {});
      } catch (const corio::RuntimeError& e) {
        what = e.what();
      }
      co_return;
    }(what));
  }).join();
  EXPECT_NE(what.find("main thread"), std::string::npos) << what;
}

// The loop's helper threads (to_thread's pool, the DNS pool) block every asynchronous signal, so a signal
// sent to the process reaches the loop's handler even when those threads were started before the handler
// was set: one with the signal unblocked would take it, and its default action would end the program.
TEST(Signals, HelperThreadsStartedEarlierNeverTakeTheSignal) {
  run_guarded([]() -> Task<> {
    std::vector<corio::TaskHandle<bool>> calls;
    // Four calls held until all four run at once, so four worker threads exist (each reports its own mask).
    auto all_in = std::make_shared<std::latch>(4);
    for (int i = 0; i < 4; ++i)
      calls.push_back(corio::create_task(corio::to_thread([all_in] {
        all_in->arrive_and_wait();
        return blocked_here(SIGUSR1) && blocked_here(SIGTERM) && !blocked_here(SIGSEGV);
      })));
    for (auto& c : calls) EXPECT_TRUE(co_await c) << "a worker thread has SIGUSR1 or SIGTERM unblocked";
    corio::EventLoop& loop = corio::get_running_loop();
    corio::Event got;
    int count = 0;
    loop.add_signal_handler(SIGUSR1, [&] {
      ++count;
      got.set();
    });
    for (int i = 1; i <= 20; ++i) {
      ::kill(::getpid(), SIGUSR1);  // process-directed: any thread with it unblocked may take it
      co_await got.wait();
      got.clear();
    }
    EXPECT_EQ(count, 20);
    loop.remove_signal_handler(SIGUSR1);
  }());
}

// A signal given to a thread of the program's own that has it unblocked (here thread-directed, so the
// kernel has no other choice; a process-directed one goes there too, the loop's thread blocking it) reaches
// the loop's handler: the disposition the loop installs hands it on. The thread used to take it with the
// program's disposition: ignored here (the handler never ran); for SIGTERM or SIGUSR1 the default action,
// the end of the program. Removing the handler gives the disposition back.
TEST(Signals, ASignalGivenToAProgramThreadReachesTheHandler) {
  ASSERT_EQ(std::signal(SIGWINCH, SIG_IGN), SIG_DFL);
  std::promise<void> stop;
  std::thread program_thread([done = stop.get_future()] { done.wait(); });
  struct Join {
    std::promise<void>& stop;
    std::thread& t;
    ~Join() {
      stop.set_value();
      t.join();
    }
  } join{stop, program_thread};
  run_guarded([](pthread_t target) -> Task<> {
    corio::EventLoop& loop = corio::get_running_loop();
    corio::Event got;
    int count = 0;
    loop.add_signal_handler(SIGWINCH, [&] {
      ++count;
      got.set();
    });
    for (int i = 1; i <= 5; ++i) {
      EXPECT_EQ(::pthread_kill(target, SIGWINCH), 0);
      co_await corio::wait_for(got.wait(), 5s);
      got.clear();
    }
    EXPECT_EQ(count, 5);
    EXPECT_TRUE(loop.remove_signal_handler(SIGWINCH));
  }(program_thread.native_handle()));
  EXPECT_EQ(std::signal(SIGWINCH, SIG_DFL), SIG_IGN);  // the program's disposition, given back
}

// A signal that came while its handler was installed, but was not read yet, must not get its default action
// (ending the program) when the handler is removed or the loop closes: it is dropped, as asyncio drops a
// signal whose handler is gone by the time it is dispatched.
TEST(Signals, ASignalPendingWhenItsHandlerGoesIsDropped) {
  run_guarded([]() -> Task<> {
    corio::EventLoop& loop = corio::get_running_loop();
    int count = 0;
    loop.add_signal_handler(SIGUSR1, [&] { ++count; });
    ::kill(::getpid(), SIGUSR1);  // pending: the loop has not read it (no await since)
    EXPECT_TRUE(loop.remove_signal_handler(SIGUSR1));
    EXPECT_FALSE(blocked_here(SIGUSR1));
    co_await corio::sleep(0s);
    EXPECT_EQ(count, 0);
  }());
  {
    corio::EventLoop loop;
    loop.add_signal_handler(SIGUSR2, [] {});
    ::kill(::getpid(), SIGUSR2);
  }  // closed with it pending
  EXPECT_FALSE(blocked_here(SIGUSR2));
  SUCCEED() << "still alive";
}
