// create_subprocess_exec and Process: stdio routing, cwd, env, exit codes, communicate, signals, errors,
// background reaping, cancellation.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/udp.hpp"
#include "corio/process/subprocess.hpp"
#include "process_test_util.hpp"

using namespace std::chrono_literals;
using corio::Process;
using corio::Stdio;
using corio::StreamWriter;
using corio::SubprocessOptions;
using corio::Task;
using corio_proc_test::run_guarded;
using corio_proc_test::sh;

namespace {

SubprocessOptions opts(Stdio in, Stdio out, Stdio err) {
  SubprocessOptions o;
  o.in = in;
  o.out = out;
  o.err = err;
  return o;
}

std::string readlink_self(int fd) {
  char buf[PATH_MAX];
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n < 0 ? std::string() : std::string(buf, static_cast<std::size_t>(n));
}

// Whether `pid` is still our child (running, or exited and not reaped yet); never reaps it.
bool is_our_child(int pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

// Whether `pid` is still running (not exited); never reaps it.
bool is_running_child(int pid) {
  siginfo_t info{};
  info.si_pid = 0;
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
  return info.si_pid == 0;
}

// Until `pid` is no longer a child of ours to reap (corio reaped it), for at most `limit`.
bool reaped_within(int pid, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (is_our_child(pid)) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// The descriptors open now, in increasing order (without the one that lists them).
std::vector<int> open_fd_numbers() {
  std::vector<int> out;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return out;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.' && std::atoi(e->d_name) != ::dirfd(d)) out.push_back(std::atoi(e->d_name));
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

int count_open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  while (::readdir(d)) ++n;
  ::closedir(d);
  return n;
}

// Waits (one short sleep at a time, bounded: a hang guard, not a timing) until pred() holds.
template <class Pred>
Task<bool> eventually(Pred pred) {
  for (int i = 0; i < 500; ++i) {
    if (pred()) co_return true;
    co_await corio::sleep(10ms);
  }
  co_return pred();
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return s;
}

// ---------------------------------------------------------------- stdio routing

Task<> pipes_for_out_and_err() {
  auto argv = sh("printf 'to out'; printf 'to err' >&2; exit 0");
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::devnull, Stdio::pipe, Stdio::pipe));
  std::string out = co_await p.out().read();
  std::string err = co_await p.err().read();
  EXPECT_EQ(out, "to out");
  EXPECT_EQ(err, "to err");
  EXPECT_EQ(co_await p.wait(), 0);
  EXPECT_EQ(p.returncode(), std::optional<int>(0));
}

// stderr = Stdio::to_stdout (asyncio.subprocess.STDOUT): both streams arrive, in the order written, on out().
Task<> stderr_to_stdout() {
  auto argv = sh("printf 'one '; printf 'two ' >&2; printf 'three'");
  Process p =
      co_await corio::create_subprocess_exec(argv, opts(Stdio::devnull, Stdio::pipe, Stdio::to_stdout));
  EXPECT_EQ(co_await p.out().read(), "one two three");
  EXPECT_THROW(p.err(), corio::InvalidStateError);
  EXPECT_EQ(co_await p.wait(), 0);
  // With stdout to /dev/null, stderr goes there too.
  Process q =
      co_await corio::create_subprocess_exec(argv, opts(Stdio::devnull, Stdio::devnull, Stdio::to_stdout));
  auto r = co_await q.communicate();
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(q.returncode(), std::optional<int>(0));
  // Only stderr can follow stdout.
  for (int which = 0; which < 2; ++which) {
    SubprocessOptions o = which == 0 ? opts(Stdio::to_stdout, Stdio::pipe, Stdio::inherit)
                                     : opts(Stdio::devnull, Stdio::to_stdout, Stdio::inherit);
    try {
      (void)co_await corio::create_subprocess_exec(argv, o);
      ADD_FAILURE() << "no error for to_stdout on " << (which == 0 ? "in" : "out");
    } catch (const corio::Error& e) {
      EXPECT_STREQ(e.what(), "create_subprocess_exec(): Stdio::to_stdout is only for err (stderr)");
    }
  }
}

// create_subprocess_shell: /bin/sh -c with the shell's syntax; a command the shell cannot find is exit 127;
// lazy, as every coroutine.
Task<> shell_runs_the_command_line() {
  std::string cmd = "x=world; printf 'hello %s\\n' \"$x\" | tr a-z A-Z; echo err >&2; exit 3";
  Process p = co_await corio::create_subprocess_shell(cmd, opts(Stdio::devnull, Stdio::pipe, Stdio::pipe));
  auto r = co_await p.communicate();
  EXPECT_EQ(r.out, "HELLO WORLD\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(p.returncode(), std::optional<int>(3));
  std::string missing = "no-such-command-for-corio-tests";
  Process q =
      co_await corio::create_subprocess_shell(missing, opts(Stdio::devnull, Stdio::devnull, Stdio::devnull));
  EXPECT_EQ(co_await q.wait(), 127);
  std::string with_nul("echo a\0b", 9);
  auto never = corio::create_subprocess_shell(with_nul);  // nothing runs, nothing is thrown, until awaited
  try {
    (void)co_await std::move(never);
    ADD_FAILURE() << "no error for a NUL byte";
  } catch (const corio::Error& e) {
    EXPECT_STREQ(e.what(), "create_subprocess_shell(): the command holds a NUL byte");
  }
}

Task<> pipe_for_in() {
  auto argv = std::vector<std::string>{"cat"};
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::inherit));
  p.in().write("hello cat\n");
  co_await p.in().drain();
  std::string line = co_await p.out().readline();
  EXPECT_EQ(line, "hello cat\n");
  p.in().close();
  co_await p.in().wait_closed();
  EXPECT_EQ(co_await p.out().read(), "");
  EXPECT_EQ(co_await p.wait(), 0);
}

Task<> write_eof_gives_the_child_eof() {
  auto argv = std::vector<std::string>{"cat"};
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::inherit));
  p.in().write("no newline at the end");
  p.in().write_eof();
  EXPECT_EQ(co_await p.out().read(), "no newline at the end");  // read() to EOF: cat saw EOF and exited
  EXPECT_EQ(co_await p.wait(), 0);
  PCO_EXPECT_THROW_AS(p.in().write("more"), corio::RuntimeError, e, (void)e);
}

// The child exits while we keep writing its stdin: drain() reports BrokenPipeError; the program is not
// killed by SIGPIPE.
Task<> writing_to_an_exited_child() {
  auto argv = sh("exit 0");
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::inherit, Stdio::inherit));
  EXPECT_EQ(co_await p.wait(), 0);
  p.in().write(pattern(1 << 20));
  PCO_EXPECT_THROW_AS(co_await p.in().drain(), corio::BrokenPipeError, e, EXPECT_EQ(e.code(), EPIPE));
}

Task<> devnull_everywhere() {
  // The child reports where its own descriptors point, through a pipe on the one stream not under test.
  {
    auto argv = sh("readlink /proc/$$/fd/0; readlink /proc/$$/fd/2; read x; echo \"read=$?\"");
    Process p =
        co_await corio::create_subprocess_exec(argv, opts(Stdio::devnull, Stdio::pipe, Stdio::devnull));
    auto r = co_await p.communicate();
    EXPECT_EQ(r.out, "/dev/null\n/dev/null\nread=1\n");  // stdin is /dev/null: `read` hits EOF
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(p.returncode(), std::optional<int>(0));
  }
  {
    auto argv = sh("x=$(readlink /proc/$$/fd/1); echo \"$x\" >&2; echo 'this output disappears'");
    Process p =
        co_await corio::create_subprocess_exec(argv, opts(Stdio::devnull, Stdio::devnull, Stdio::pipe));
    auto r = co_await p.communicate();
    EXPECT_EQ(r.err, "/dev/null\n");
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(p.returncode(), std::optional<int>(0));
  }
  {
    // Reading stdin from /dev/null: EOF at once.
    auto argv = std::vector<std::string>{"cat"};
    Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::devnull, Stdio::pipe, Stdio::pipe));
    auto r = co_await p.communicate();
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(p.returncode(), std::optional<int>(0));
  }
}

Task<> inherit_everywhere() {
  // With Stdio::inherit the child's descriptor is the parent's: compare what they point to. Each stream
  // under test is inherited while another one carries the report.
  std::string parent0 = readlink_self(0), parent1 = readlink_self(1), parent2 = readlink_self(2);
  {
    auto argv = sh("readlink /proc/$$/fd/0; readlink /proc/$$/fd/2");
    Process p =
        co_await corio::create_subprocess_exec(argv, opts(Stdio::inherit, Stdio::pipe, Stdio::inherit));
    auto r = co_await p.communicate();
    std::string expect;
    if (!parent0.empty()) expect += parent0 + "\n";
    if (!parent2.empty()) expect += parent2 + "\n";
    EXPECT_EQ(r.out, expect);
  }
  {
    auto argv = sh("x=$(readlink /proc/$$/fd/1); echo \"$x\" >&2");
    Process p =
        co_await corio::create_subprocess_exec(argv, opts(Stdio::devnull, Stdio::inherit, Stdio::pipe));
    auto r = co_await p.communicate();
    EXPECT_EQ(r.err, parent1.empty() ? std::string() : parent1 + "\n");
  }
  {
    // The default options inherit all three.
    auto argv = sh("exit 0");
    Process p = co_await corio::create_subprocess_exec(argv);
    PCO_EXPECT_THROW_AS(p.in(), corio::InvalidStateError, e, (void)e);
    PCO_EXPECT_THROW_AS(p.out(), corio::InvalidStateError, e, (void)e);
    PCO_EXPECT_THROW_AS(p.err(), corio::InvalidStateError, e, (void)e);
    EXPECT_EQ(co_await p.wait(), 0);
  }
}

// ---------------------------------------------------------------- cwd, env

Task<> cwd_is_used() {
  char tmpl[] = "/tmp/corio-proc-XXXXXX";
  char* dir = ::mkdtemp(tmpl);
  PCO_ASSERT(dir != nullptr);
  char real[PATH_MAX];
  PCO_ASSERT(::realpath(dir, real) != nullptr);
  std::string expect = std::string(real) + "\n";
  auto o = opts(Stdio::devnull, Stdio::pipe, Stdio::inherit);
  o.cwd = std::string(dir);
  auto argv = std::vector<std::string>{"pwd"};
  auto argv2 = sh("pwd -P");
  Process p = co_await corio::create_subprocess_exec(argv2, o);
  auto r = co_await p.communicate();
  EXPECT_EQ(r.out, expect);
  EXPECT_EQ(p.returncode(), std::optional<int>(0));
  ::rmdir(dir);

  o.cwd = std::string("/nonexistent/corio/dir");
  PCO_EXPECT_THROW_AS(co_await corio::create_subprocess_exec(argv, o), corio::OSError, e,
                      EXPECT_EQ(e.code(), ENOENT));
}

Task<> env_replaces_everything() {
  ::setenv("CORIO_PARENT_ONLY", "1", 1);
  auto o = opts(Stdio::devnull, Stdio::pipe, Stdio::inherit);
  o.env = std::map<std::string, std::string>{{"FOO", "bar baz"}, {"ZED", "1"}};
  auto argv = std::vector<std::string>{"env"};  // no PATH in env: found in /bin:/usr/bin (as Python)
  Process p = co_await corio::create_subprocess_exec(argv, o);
  auto r = co_await p.communicate();
  EXPECT_EQ(r.out, "FOO=bar baz\nZED=1\n");
  EXPECT_EQ(p.returncode(), std::optional<int>(0));

  o.env = std::map<std::string, std::string>{};
  Process q = co_await corio::create_subprocess_exec(argv, o);
  auto r2 = co_await q.communicate();
  EXPECT_EQ(r2.out, "");

  o.env.reset();  // unset: the parent's environment
  Process s = co_await corio::create_subprocess_exec(argv, o);
  auto r3 = co_await s.communicate();
  EXPECT_NE(r3.out.find("CORIO_PARENT_ONLY=1\n"), std::string::npos);
  ::unsetenv("CORIO_PARENT_ONLY");
}

// With env given, a bare program name is looked up in env's PATH, as Python's subprocess does (not in this
// process's PATH).
Task<> env_path_finds_the_program() {
  auto o = opts(Stdio::devnull, Stdio::pipe, Stdio::inherit);
  auto argv = std::vector<std::string>{"env"};
  o.env = std::map<std::string, std::string>{{"PATH", "/nonexistent-corio-dir:/usr/bin:/bin"}};
  Process p = co_await corio::create_subprocess_exec(argv, o);
  auto r = co_await p.communicate();
  EXPECT_EQ(r.out, "PATH=/nonexistent-corio-dir:/usr/bin:/bin\n");
  o.env = std::map<std::string, std::string>{{"PATH", "/nonexistent-corio-dir"}};
  PCO_EXPECT_THROW_AS(co_await corio::create_subprocess_exec(argv, o), corio::OSError, e, {
    EXPECT_EQ(e.code(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("env"), std::string::npos) << e.what();
  });
}

// ---------------------------------------------------------------- exit status

Task<> exit_codes() {
  for (int code : {0, 1, 7, 255}) {
    auto argv = sh("exit " + std::to_string(code));
    Process p = co_await corio::create_subprocess_exec(argv);
    EXPECT_GT(p.pid(), 0);  // (returncode() may be set already: the child may have exited; see below)
    EXPECT_EQ(co_await p.wait(), code);
    EXPECT_EQ(p.returncode(), std::optional<int>(code));
    EXPECT_EQ(co_await p.wait(), code);  // again: the stored code
  }
  auto argv = sh("kill -USR2 $$");
  Process p = co_await corio::create_subprocess_exec(argv);
  EXPECT_EQ(co_await p.wait(), -SIGUSR2);
  EXPECT_EQ(p.returncode(), std::optional<int>(-SIGUSR2));
}

Task<> two_waiters_one_child() {
  auto argv = std::vector<std::string>{"cat"};
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::devnull, Stdio::inherit));
  auto a = corio::create_task(p.wait());
  auto b = corio::create_task(p.wait());
  co_await corio::sleep(0s);
  co_await corio::sleep(0s);
  EXPECT_FALSE(a.done());
  EXPECT_FALSE(b.done());
  p.in().close();
  EXPECT_EQ(co_await a, 0);
  EXPECT_EQ(co_await b, 0);
}

// Someone else reaped the child (a SIGCHLD set to SIG_IGN does that too): wait() must not hang. As
// asyncio, the exit code is unknown then and reported as 255.
Task<> reaped_by_someone_else() {
  auto argv = sh("exit 3");
  Process p = co_await corio::create_subprocess_exec(argv);
  int status = 0;
  PCO_ASSERT(::waitpid(p.pid(), &status, 0) == p.pid());
  EXPECT_EQ(co_await p.wait(), 255);
  EXPECT_EQ(p.returncode(), std::optional<int>(255));
  p.kill();  // reaped: a no-op
}

// ---------------------------------------------------------------- communicate

Task<> communicate_4mib_through_cat() {
  const std::string input = pattern(4 << 20);
  auto argv = std::vector<std::string>{"cat"};
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::pipe));
  auto r = co_await p.communicate(input);
  EXPECT_EQ(r.out.size(), input.size());
  EXPECT_TRUE(r.out == input);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(p.returncode(), std::optional<int>(0));
}

Task<> communicate_big_stdout_and_stderr_at_once() {
  // The child interleaves 64 KiB writes to stdout and stderr (4 MiB each), then reads all of its 4 MiB of
  // input and reports its size: any sequential reader or writer deadlocks on a full pipe.
  auto argv = std::vector<std::string>{"python3", "-c",
                                       "import os, sys\n"
                                       "for i in range(64):\n"
                                       "    os.write(1, b'o' * 65536)\n"
                                       "    os.write(2, b'e' * 65536)\n"
                                       "data = sys.stdin.buffer.read()\n"
                                       "os.write(1, b'|%d' % len(data))\n"};
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::pipe));
  auto r = co_await p.communicate(pattern(4 << 20));
  std::string expect_out = std::string(4 << 20, 'o') + "|" + std::to_string(4 << 20);
  EXPECT_EQ(r.out.size(), expect_out.size());
  EXPECT_TRUE(r.out == expect_out);
  EXPECT_EQ(r.err.size(), std::size_t{4} << 20);
  EXPECT_TRUE(r.err == std::string(4 << 20, 'e'));
  EXPECT_EQ(p.returncode(), std::optional<int>(0));
}

// A write to a child's stdin, blocked on a full pipe, while the whole process is stopped and continued
// again and again (job control, a cgroup freezer; here a forked helper sending SIGSTOP and SIGCONT): the
// communicate completes. On io_uring the kernel's blocked write came back with EINTR, which was thrown as
// "write to /bin/sh[...] stdin: Interrupted system call"; it is now submitted again (nothing was written).
Task<> stopped_and_continued_during_a_blocked_write() {
  const pid_t self = ::getpid();
  const pid_t stopper = ::fork();
  if (stopper == 0) {
    for (int i = 0; i < 40; ++i) {  // ~0.4 s, while the child sleeps and our write is blocked
      ::usleep(5000);
      ::kill(self, SIGSTOP);
      ::usleep(5000);
      ::kill(self, SIGCONT);  // (always last: the test process is never left stopped)
    }
    ::_exit(0);
  }
  PCO_ASSERT(stopper > 0);
  auto argv = sh("sleep 0.3; exec wc -c");
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::inherit));
  std::string out;
  try {
    out = (co_await p.communicate(pattern(1 << 20))).out;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "communicate threw: " << e.what();
    p.kill();
  }
  (void)co_await p.wait();
  int status = 0;
  EXPECT_EQ(::waitpid(stopper, &status, 0), stopper);
  EXPECT_EQ(out, std::to_string(1 << 20) + "\n");
}

Task<> communicate_child_ignores_stdin() {
  // The child exits without reading: writing its stdin fails (broken pipe), which communicate() ignores.
  {
    auto argv = sh("printf done; exit 3");
    Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::inherit));
    auto r = co_await p.communicate(pattern(1 << 20));
    EXPECT_EQ(r.out, "done");
    EXPECT_EQ(p.returncode(), std::optional<int>(3));
  }
  {
    // Deterministic order: the child is gone (not reaped) before the first byte is written.
    auto argv = sh("exit 4");
    Process p =
        co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::devnull, Stdio::inherit));
    siginfo_t info{};
    PCO_ASSERT(::waitid(P_PID, static_cast<id_t>(p.pid()), &info, WEXITED | WNOWAIT) == 0);
    auto r = co_await p.communicate(pattern(256 << 10));
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(p.returncode(), std::optional<int>(4));
  }
  {
    // Same, small input (fits the pipe's buffer in one write).
    auto argv = sh("exit 5");
    Process p =
        co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::inherit, Stdio::inherit));
    siginfo_t info{};
    PCO_ASSERT(::waitid(P_PID, static_cast<id_t>(p.pid()), &info, WEXITED | WNOWAIT) == 0);
    auto r = co_await p.communicate("x");
    EXPECT_EQ(p.returncode(), std::optional<int>(5));
  }
}

Task<> communicate_without_pipes() {
  auto argv = sh("exit 6");
  Process p = co_await corio::create_subprocess_exec(argv);
  auto r = co_await p.communicate();
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(p.returncode(), std::optional<int>(6));
}

// ---------------------------------------------------------------- signals to the child

Task<> signals_to_child() {
  struct Case {
    const char* name;
    int expect;
  };
  for (Case c : {Case{"send_signal", -SIGUSR1}, Case{"terminate", -SIGTERM}, Case{"kill", -SIGKILL}}) {
    auto argv = sh("echo ready; exec cat");  // traps nothing; blocks on its stdin
    Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::inherit));
    EXPECT_EQ(co_await p.out().readline(), "ready\n");
    std::string name = c.name;
    if (name == "send_signal")
      p.send_signal(SIGUSR1);
    else if (name == "terminate")
      p.terminate();
    else
      p.kill();
    EXPECT_EQ(co_await p.wait(), c.expect) << name;
    // Reaped: every further signal is a no-op and the exit code stays.
    p.send_signal(SIGTERM);
    p.terminate();
    p.kill();
    EXPECT_EQ(p.returncode(), std::optional<int>(c.expect));
  }
}

Task<> signal_to_exited_unreaped_child() {
  auto argv = sh("exit 2");
  Process p = co_await corio::create_subprocess_exec(argv);
  siginfo_t info{};
  PCO_ASSERT(::waitid(P_PID, static_cast<id_t>(p.pid()), &info, WEXITED | WNOWAIT) == 0);
  p.terminate();  // a zombie: nothing to do, no error
  p.kill();
  EXPECT_EQ(co_await p.wait(), 2);
}

// ---------------------------------------------------------------- errors

Task<> missing_program() {
  auto argv = std::vector<std::string>{"corio-no-such-program-xyz", "arg"};
  PCO_EXPECT_THROW_AS(
      co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::pipe)),
      corio::OSError, e, {
        EXPECT_EQ(e.code(), ENOENT);
        EXPECT_NE(std::string(e.what()).find("corio-no-such-program-xyz"), std::string::npos) << e.what();
      });
  auto argv2 = std::vector<std::string>{"/nonexistent/dir/prog"};
  PCO_EXPECT_THROW_AS(co_await corio::create_subprocess_exec(argv2), corio::OSError, e,
                      EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/prog"), std::string::npos));
  auto argv3 = std::vector<std::string>{"/dev/null"};  // exists, not executable
  PCO_EXPECT_THROW_AS(co_await corio::create_subprocess_exec(argv3), corio::OSError, e, {
    EXPECT_EQ(e.code(), EACCES);
    EXPECT_NE(std::string(e.what()).find("/dev/null"), std::string::npos);
  });
  auto empty = std::vector<std::string>{};
  PCO_EXPECT_THROW_AS(co_await corio::create_subprocess_exec(empty), corio::Error, e, (void)e);
  // A failed start leaves no zombie and leaks no descriptor.
  int fds = count_open_fds();
  for (int i = 0; i < 20; ++i) {
    try {
      (void)co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::pipe));
    } catch (const corio::OSError&) {
    }
  }
  EXPECT_EQ(count_open_fds(), fds);
  errno = 0;
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

// ---------------------------------------------------------------- shell, streaming

Task<> shell_pipeline() {
  auto argv = sh("printf 'a\\nb\\n' | sort -r");
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::devnull, Stdio::pipe, Stdio::pipe));
  auto r = co_await p.communicate();
  EXPECT_EQ(r.out, "b\na\n");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(p.returncode(), std::optional<int>(0));
}

Task<> readline_while_running() {
  // Each line is read while the child is still running, blocked on its stdin until we answer.
  auto argv = sh("echo first; read x; echo \"got $x\"; read y; echo last");
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::inherit));
  EXPECT_EQ(co_await p.out().readline(), "first\n");
  EXPECT_FALSE(p.returncode().has_value());
  EXPECT_TRUE(is_running_child(p.pid()));
  p.in().write("abc\n");
  co_await p.in().drain();
  EXPECT_EQ(co_await p.out().readline(), "got abc\n");
  EXPECT_TRUE(is_running_child(p.pid()));
  p.in().close();
  EXPECT_EQ(co_await p.out().readline(), "last\n");
  EXPECT_EQ(co_await p.out().readline(), "");  // EOF
  EXPECT_TRUE(p.out().at_eof());
  EXPECT_EQ(co_await p.wait(), 0);
}

Task<> ticker(int& ticks, corio::TaskHandle<int>& waiter, bool& waiter_done_early) {
  for (int i = 0; i < 20; ++i) {
    co_await corio::sleep(1ms);
    if (waiter.done()) waiter_done_early = true;
    ++ticks;
  }
}

Task<> loop_stays_responsive() {
  auto argv = std::vector<std::string>{"cat"};  // runs until its stdin closes
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::devnull, Stdio::inherit));
  auto waiter = corio::create_task(p.wait());
  int ticks = 0;
  bool early = false;
  co_await ticker(ticks, waiter, early);
  EXPECT_EQ(ticks, 20);
  EXPECT_FALSE(early);
  EXPECT_FALSE(waiter.done());
  p.in().close();
  EXPECT_EQ(co_await waiter, 0);
}

// ---------------------------------------------------------------- lifetime

Task<> destroyed_without_wait_running_child() {
  int fds_before = count_open_fds();
  int pid = -1;
  {
    auto argv = std::vector<std::string>{"cat"};
    Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::pipe));
    pid = p.pid();
    EXPECT_TRUE(is_running_child(pid));
    // Destroyed while running: its stdin closes, so cat exits soon after; the loop reaps it.
  }
  bool gone = co_await eventually([pid] { return !is_our_child(pid); });
  EXPECT_TRUE(gone) << "pid " << pid << " left as a zombie";
  EXPECT_TRUE(co_await eventually([&] { return count_open_fds() == fds_before; }));
  EXPECT_EQ(count_open_fds(), fds_before);
}

Task<> destroyed_without_wait_exited_child() {
  int fds_before = count_open_fds();
  int pid = -1;
  {
    auto argv = sh("exit 0");
    Process p = co_await corio::create_subprocess_exec(argv);
    pid = p.pid();
    siginfo_t info{};
    PCO_ASSERT(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) == 0);
  }
  EXPECT_FALSE(is_our_child(pid));  // reaped by the destructor itself
  EXPECT_EQ(count_open_fds(), fds_before);
}

// A task holding a running child is cancelled by run()'s shutdown: the Process is destroyed while run()
// cancels the leftovers, and its background reaper starts then, as the loop is about to close.
Task<> hold_child_forever(int& pid, std::vector<std::string> argv) {
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::inherit));
  pid = p.pid();
  co_await corio::sleep(1h);
}

// Cancelled, cleans up over several loop turns (so a reaper started by another task's cleanup gets to run).
Task<> slow_cleanup() {
  bool cancelled = false;
  try {
    co_await corio::sleep(1h);
  } catch (const corio::CancelledError&) {
    cancelled = true;
  }
  if (cancelled) {
    for (int i = 0; i < 5; ++i) co_await corio::sleep(0s);
    throw corio::CancelledError();
  }
}

Task<> leave_a_child_behind(int& pid, std::vector<std::string> argv) {
  (void)corio::create_task(hold_child_forever(pid, std::move(argv)));
  (void)corio::create_task(slow_cleanup());
  co_await eventually([&] { return pid > 0; });
}

Task<> moved_process() {
  auto argv = sh("exit 9");
  Process a = co_await corio::create_subprocess_exec(argv);
  int pid = a.pid();
  Process b(std::move(a));
  EXPECT_EQ(b.pid(), pid);
  EXPECT_EQ(a.pid(), -1);  // NOLINT(bugprone-use-after-move): moved-from state is specified
  Process c;
  c = std::move(b);
  EXPECT_EQ(c.pid(), pid);
  EXPECT_EQ(co_await c.wait(), 9);
  PCO_EXPECT_THROW_AS(co_await a.wait(), corio::InvalidStateError, e, (void)e);
}

Task<> cancel_wait() {
  auto argv = std::vector<std::string>{"cat"};
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::devnull, Stdio::inherit));
  auto waiter = corio::create_task(p.wait());
  co_await corio::sleep(0s);
  co_await corio::sleep(0s);
  EXPECT_FALSE(waiter.done());
  EXPECT_TRUE(waiter.cancel());
  bool cancelled = false;
  try {
    (void)co_await waiter;
  } catch (const corio::CancelledError&) {
    cancelled = true;
  }
  EXPECT_TRUE(cancelled);
  EXPECT_TRUE(waiter.cancelled());
  // The child is untouched by the cancellation.
  EXPECT_TRUE(is_running_child(p.pid()));
  EXPECT_FALSE(p.returncode().has_value());
  p.kill();
  EXPECT_EQ(co_await p.wait(), -SIGKILL);
}

// With the parent's descriptors 0 and 1 closed (a daemon), a pipe's child end lands on 0 or 1; the child's
// own redirections must not overwrite it (stderr went to /dev/null: stdout=devnull reopened fd 1 before
// the stderr pipe, sitting there, was moved to 2).
Task<> pipes_with_stdio_closed(std::string& err, std::string& out) {
  const int saved0 = ::dup(0), saved1 = ::dup(1);
  ::close(0);
  ::close(1);
  struct Restore {
    int s0, s1;
    ~Restore() {
      ::dup2(s0, 0);
      ::dup2(s1, 1);
      ::close(s0);
      ::close(s1);
    }
  } restore{saved0, saved1};
  {
    auto argv = sh("echo to-stderr >&2");
    Process p =
        co_await corio::create_subprocess_exec(argv, opts(Stdio::devnull, Stdio::devnull, Stdio::pipe));
    err = (co_await p.communicate()).err;
  }
  {
    auto argv = sh("read x; echo \"got $x\"");
    Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::pipe, Stdio::devnull));
    out = (co_await p.communicate("in\n")).out;
  }
}

Task<> many_children_at_once() {
  std::vector<Process> procs;
  for (int i = 0; i < 16; ++i) {
    auto argv = sh("read x; exit $x");
    procs.push_back(
        co_await corio::create_subprocess_exec(argv, opts(Stdio::pipe, Stdio::devnull, Stdio::inherit)));
  }
  for (int i = 15; i >= 0; --i) procs[static_cast<std::size_t>(i)].in().write(std::to_string(i) + "\n");
  for (int i = 0; i < 16; ++i) EXPECT_EQ(co_await procs[static_cast<std::size_t>(i)].wait(), i);
}

}  // namespace

TEST(Subprocess, PipesForOutAndErr) { run_guarded(pipes_for_out_and_err()); }
TEST(Subprocess, PipeForIn) { run_guarded(pipe_for_in()); }
TEST(Subprocess, StderrToStdout) { run_guarded(stderr_to_stdout()); }
TEST(Subprocess, ShellRunsTheCommandLine) { run_guarded(shell_runs_the_command_line()); }
TEST(Subprocess, WriteEofGivesTheChildEof) { run_guarded(write_eof_gives_the_child_eof()); }
TEST(Subprocess, WritingToAnExitedChildIsBrokenPipeNotSIGPIPE) { run_guarded(writing_to_an_exited_child()); }
TEST(Subprocess, DevnullForEachStream) { run_guarded(devnull_everywhere()); }
TEST(Subprocess, PipesWhenTheParentsStdioIsClosed) {
  std::string err, out;
  run_guarded(pipes_with_stdio_closed(err, out));
  EXPECT_EQ(err, "to-stderr\n");
  EXPECT_EQ(out, "got in\n");
}
TEST(Subprocess, InheritForEachStream) { run_guarded(inherit_everywhere()); }
TEST(Subprocess, Cwd) { run_guarded(cwd_is_used()); }
TEST(Subprocess, EnvReplacesTheWholeEnvironment) { run_guarded(env_replaces_everything()); }
TEST(Subprocess, EnvPathFindsTheProgram) { run_guarded(env_path_finds_the_program()); }
TEST(Subprocess, WaitReturnsExitCodeOrMinusSignal) { run_guarded(exit_codes()); }
TEST(Subprocess, TwoWaitersOnOneChild) { run_guarded(two_waiters_one_child()); }
TEST(Subprocess, WaitDoesNotHangWhenReapedElsewhere) { run_guarded(reaped_by_someone_else()); }
TEST(Subprocess, Communicate4MiBThroughCat) { run_guarded(communicate_4mib_through_cat()); }
TEST(Subprocess, CommunicateBigStdoutAndStderrAtOnce) {
  run_guarded(communicate_big_stdout_and_stderr_at_once());
}
TEST(Subprocess, CommunicateChildIgnoresStdin) { run_guarded(communicate_child_ignores_stdin()); }
TEST(Subprocess, AWriteBlockedWhileTheProcessIsStoppedAndContinuedGoesOn) {
  run_guarded(stopped_and_continued_during_a_blocked_write());
}
TEST(Subprocess, CommunicateWithoutPipes) { run_guarded(communicate_without_pipes()); }
TEST(Subprocess, SendSignalTerminateKill) { run_guarded(signals_to_child()); }
TEST(Subprocess, SignalToExitedChildIsANoOp) { run_guarded(signal_to_exited_unreaped_child()); }
TEST(Subprocess, MissingProgramThrowsOSErrorNamingIt) { run_guarded(missing_program()); }
TEST(Subprocess, ShellPipeline) { run_guarded(shell_pipeline()); }
TEST(Subprocess, ReadlineWhileRunning) { run_guarded(readline_while_running()); }
TEST(Subprocess, LoopStaysResponsive) { run_guarded(loop_stays_responsive()); }
TEST(Subprocess, DestroyedWithoutWaitRunningChildIsReaped) {
  run_guarded(destroyed_without_wait_running_child());
}
TEST(Subprocess, DestroyedWithoutWaitExitedChildIsReaped) {
  run_guarded(destroyed_without_wait_exited_child());
}
// Whether the child exits as the loop goes (cat: its stdin closes) or outlives it (sleep 30, killed here),
// the reaper task run() cancels hands it to a thread of its own: it is reaped all the same, never left a
// zombie for the rest of the program.
TEST(Subprocess, ProcessDestroyedDuringRunShutdown) {
  {
    int pid = -1;
    run_guarded(leave_a_child_behind(pid, {"cat"}));
    ASSERT_GT(pid, 0);
    EXPECT_TRUE(reaped_within(pid, 10s)) << "pid " << pid << " left as a zombie";
  }
  {
    int pid = -1;
    run_guarded(leave_a_child_behind(pid, sh("exec sleep 30")));
    ASSERT_GT(pid, 0);
    EXPECT_TRUE(is_running_child(pid));
    ::kill(pid, SIGKILL);
    EXPECT_TRUE(reaped_within(pid, 10s)) << "pid " << pid << " left as a zombie";
  }
}

// Destroyed while its loop exists but does not run, with the child still running: no loop can reap it, so
// a thread does. And the pidfd the backend watched (wait() waited on it) is forgotten there: the next
// descriptor given its number is watched afresh (on epoll it inherited a stale registration, and a receive
// on it waited forever).
TEST(Subprocess, DestroyedBetweenRunsIsReapedAndLeavesNothingBehind) {
  corio::EventLoop loop;
  std::optional<Process> p;
  loop.run_until_complete([](std::optional<Process>& p) -> Task<> {
    auto argv = sh("exec sleep 30");  // runs until killed
    p = co_await corio::create_subprocess_exec(argv);
    try {
      (void)co_await corio::wait_for(p->wait(), 50ms);  // waits on the pidfd: the backend watches it
      ADD_FAILURE() << "the child exited early";
    } catch (const corio::TimeoutError&) {
    }
  }(p));
  const int pid = p->pid();
  const std::vector<int> before = open_fd_numbers();
  p.reset();  // no loop running
  const std::vector<int> after = open_fd_numbers();
  std::vector<int> closed;
  for (int fd : before)
    if (!std::count(after.begin(), after.end(), fd)) closed.push_back(fd);
  ASSERT_EQ(closed.size(), 1u) << "the pidfd was not closed";
  EXPECT_TRUE(is_running_child(pid));
  ::kill(pid, SIGKILL);
  EXPECT_TRUE(reaped_within(pid, 10s)) << "pid " << pid << " left as a zombie";
  loop.run_until_complete(corio::wait_for(
      [](int pidfd_number) -> Task<> {
        corio::DatagramSocket a = co_await corio::open_datagram("127.0.0.1", 0);
        corio::DatagramSocket b = co_await corio::open_datagram("127.0.0.1", 0);
        EXPECT_EQ(a.native_handle(), pidfd_number);  // the lowest free number: the case under test
        auto rx = corio::create_task(a.recv_from());
        for (int i = 0; i < 3; ++i) co_await corio::sleep(0s);  // it waits: watched
        co_await b.send_to("hello", "127.0.0.1", a.local_port());
        auto [data, from] = co_await std::move(rx);
        EXPECT_EQ(data, "hello");
      }(closed[0]),
      10s));
}

// A Process dropped as the main task returns, its child still running: run() cancels the reaper task before
// its first step. The child is still reaped (by a thread) and the pidfd closed (both were lost: the guard
// that owned them was a local of the body, which never ran).
TEST(Subprocess, DroppedAsTheMainTaskReturnsIsReapedAndItsPidfdClosed) {
  const std::vector<int> before = open_fd_numbers();
  int pid = -1;
  corio::run([](int& pid) -> Task<> {
    auto argv = sh("exec sleep 30");
    Process p = co_await corio::create_subprocess_exec(argv);
    pid = p.pid();
  }(pid));
  ASSERT_GT(pid, 0);
  EXPECT_EQ(open_fd_numbers(), before) << "a descriptor (the pidfd) was left open";
  EXPECT_TRUE(is_running_child(pid));
  ::kill(pid, SIGKILL);
  EXPECT_TRUE(reaped_within(pid, 10s)) << "pid " << pid << " left as a zombie";
}

// A Process dropped between runs while its child still runs is reaped by a thread once the child exits.
TEST(Subprocess, DroppedWhileNoLoopRunsIsReaped) {
  corio::EventLoop loop;
  std::optional<Process> p = loop.run_until_complete([]() -> Task<std::optional<Process>> {
    auto argv = sh("exec sleep 30");
    co_return co_await corio::create_subprocess_exec(argv);
  }());
  const int pid = p->pid();
  p.reset();
  EXPECT_TRUE(is_running_child(pid));
  ::kill(pid, SIGKILL);
  EXPECT_TRUE(reaped_within(pid, 10s)) << "pid " << pid << " left as a zombie";
}

// Signals the program ignores stay ignored in the child (nohup's SIGHUP), as with Python's subprocess;
// only SIGPIPE and SIGXFSZ are set back to default.
TEST(Subprocess, IgnoredSignalsStayIgnoredInTheChild) {
  struct sigaction ign {
  }, old{};
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGHUP, &ign, &old), 0);
  run_guarded([]() -> Task<> {
    SubprocessOptions o;
    o.out = Stdio::pipe;
    auto argv = sh("kill -HUP $$; echo survived");
    Process p = co_await corio::create_subprocess_exec(argv, o);
    auto r = co_await p.communicate();
    EXPECT_EQ(r.out, "survived\n");
    EXPECT_EQ(p.returncode(), 0);
  }());
  ::sigaction(SIGHUP, &old, nullptr);
}

// The child's signal mask: a signal the program blocked itself stays blocked (as Python's children inherit
// the mask; the child got an empty one), one the loop blocked for its signalfd does not.
TEST(Subprocess, TheChildHasTheProgramsSignalMaskNotTheLoops) {
  sigset_t usr2, old;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &usr2, &old), 0);
  run_guarded([]() -> Task<> {
    corio::get_running_loop().add_signal_handler(SIGUSR1, [] {});  // blocked here, for the signalfd
    SubprocessOptions o;
    o.out = Stdio::pipe;
    // (Not through /bin/sh: dash clears the mask itself.)
    std::vector<std::string> argv = {"/bin/grep", "SigBlk", "/proc/self/status"};
    Process p = co_await corio::create_subprocess_exec(argv, o);
    auto r = co_await p.communicate();
    corio::get_running_loop().remove_signal_handler(SIGUSR1);
    const auto at = r.out.find_first_of("0123456789abcdef", r.out.find(':'));
    PCO_ASSERT(at != std::string::npos);
    const unsigned long long blocked = std::stoull(r.out.substr(at), nullptr, 16);
    EXPECT_NE(blocked & (1ull << (SIGUSR2 - 1)), 0u) << r.out;
    EXPECT_EQ(blocked & (1ull << (SIGUSR1 - 1)), 0u) << r.out;
  }());
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

// Writing to the stdin of a child that exits without reading it all is a BrokenPipeError on every backend,
// as asyncio's (io_uring turned the pipe's EPIPE into the ConnectionResetError its receive had read).
TEST(Subprocess, WritingToAChildThatLeftUnreadInputIsABrokenPipe) {
  run_guarded([]() -> Task<> {
    SubprocessOptions o;
    o.in = Stdio::pipe;
    auto argv = sh("head -c 1000 >/dev/null; sleep 0.1");
    Process p = co_await corio::create_subprocess_exec(argv, o);
    const std::string big(1 << 20, 'x');
    p.in().write(big);
    PCO_EXPECT_THROW_AS(co_await p.in().drain(), corio::BrokenPipeError, e, (void)e);
    co_await p.wait();
  }());
}

// A working directory that does not exist is named in the error (it used to read as a missing program).
TEST(Subprocess, MissingWorkingDirectoryIsNamed) {
  run_guarded([]() -> Task<> {
    SubprocessOptions o;
    o.cwd = "/nonexistent-corio-dir";
    auto argv = sh("true");
    PCO_EXPECT_THROW_AS(co_await corio::create_subprocess_exec(argv, o), corio::OSError, e, {
      EXPECT_EQ(e.code(), ENOENT);
      EXPECT_NE(std::string(e.what()).find("cwd /nonexistent-corio-dir"), std::string::npos) << e.what();
    });
  }());
}
TEST(Subprocess, MovedProcess) { run_guarded(moved_process()); }
TEST(Subprocess, CancelledWaitLeavesTheChildRunning) { run_guarded(cancel_wait()); }
TEST(Subprocess, ManyChildrenAtOnce) { run_guarded(many_children_at_once()); }

// wait() and communicate() hold the process's state, not the Process: moved while a task waits, the wait
// still returns the exit code (it waited on the moved-from object: waitpid(-1) and a poll of descriptor
// -1); destroyed while a task waits, likewise (it read the destroyed object: ASan saw a use after free).
TEST(Subprocess, AWaitOutlivesTheProcessObject) {
  run_guarded([]() -> Task<> {
    SubprocessOptions o;
    o.in = Stdio::pipe;
    Process p = co_await corio::create_subprocess_exec(sh("read x; exit 5"), o);
    auto first = corio::create_task([](Process* p) -> Task<int> { co_return co_await p->wait(); }(&p));
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
    Process q = std::move(p);
    q.in().write("go\n");
    const int by_first = co_await first;
    EXPECT_EQ(by_first, 5);
    const int by_owner = co_await q.wait();
    EXPECT_EQ(by_owner, 5);

    auto owned = std::make_unique<Process>(co_await corio::create_subprocess_exec(sh("read x; exit 7"), o));
    StreamWriter* in = &owned->in();
    auto waiting =
        corio::create_task([](Process* p) -> Task<int> { co_return co_await p->wait(); }(owned.get()));
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
    in->write("go\n");  // (the pipe lives on with the state the wait holds)
    owned.reset();
    const int code = co_await waiting;
    EXPECT_EQ(code, 7);
  }());
}

// What exec would cut short or misread is a clear error before anything starts, as Python's ValueError:
// a NUL byte in an argument (it ran "echo a" for "a\0rm -rf"), an environment name holding '=' or empty.
TEST(Subprocess, ArgumentsAndEnvironmentExecCannotCarryAreRefused) {
  run_guarded([]() -> Task<> {
    std::vector<std::string> nul_arg{"/bin/echo", std::string("a\0rm -rf", 8)};
    PCO_EXPECT_THROW_AS(co_await corio::create_subprocess_exec(nul_arg), corio::Error, e,
                        EXPECT_NE(std::string(e.what()).find("argv[1] holds a NUL byte"), std::string::npos)
                            << e.what());
    for (const std::string name : {"A=B", ""}) {
      SubprocessOptions o;
      o.env = std::map<std::string, std::string>{{name, "x"}};
      PCO_EXPECT_THROW_AS(
          co_await corio::create_subprocess_exec(sh("true"), o), corio::Error, e,
          EXPECT_NE(std::string(e.what()).find("illegal environment variable name"), std::string::npos)
              << e.what());
    }
  }());
}

// communicate() with stdin already closed (in().close(), or a second communicate()) reads the output and
// waits as usual; the input has nowhere to go (it threw RuntimeError "write() on a closed StreamWriter"
// out of its gather, leaving stdout unread).
TEST(Subprocess, CommunicateWithStdinAlreadyClosed) {
  run_guarded([]() -> Task<> {
    SubprocessOptions o;
    o.in = Stdio::pipe;
    o.out = Stdio::pipe;
    Process p = co_await corio::create_subprocess_exec(sh("cat; echo done"), o);
    p.in().close();
    auto r = co_await p.communicate("ignored");
    EXPECT_EQ(r.out, "done\n");
    EXPECT_EQ(p.returncode(), 0);
    auto again = co_await p.communicate("again");
    EXPECT_EQ(again.out, "");
  }());
}

// A descriptor the program left inheritable (no O_CLOEXEC) does not reach the child, as Python's
// close_fds=True: a child holding a pipe's write end keeps its reader from ever seeing EOF.
namespace {
Task<> inheritable_descriptor_not_passed_on(int fd) {
  auto argv =
      sh("if [ -e /proc/self/fd/" + std::to_string(fd) + " ]; then echo leaked; else echo closed; fi");
  Process p = co_await corio::create_subprocess_exec(argv, opts(Stdio::devnull, Stdio::pipe, Stdio::inherit));
  auto r = co_await p.communicate();
  EXPECT_EQ(r.out, "closed\n");
}

// returncode() is unset while the child runs, and set once it exited, without wait() (asyncio's child
// watcher sets it).
Task<> returncode_without_wait() {
  {
    auto cat = std::vector<std::string>{"cat"};
    Process p =
        co_await corio::create_subprocess_exec(cat, opts(Stdio::pipe, Stdio::devnull, Stdio::inherit));
    EXPECT_FALSE(p.returncode().has_value());  // cat waits for its input
    p.in().close();
    EXPECT_EQ(co_await p.wait(), 0);
    EXPECT_EQ(p.returncode(), std::optional<int>(0));
  }
  auto argv = sh("exit 7");
  Process p = co_await corio::create_subprocess_exec(argv);
  siginfo_t info{};
  PCO_ASSERT(::waitid(P_PID, static_cast<id_t>(p.pid()), &info, WEXITED | WNOWAIT) ==
             0);  // exited, not reaped
  EXPECT_EQ(p.returncode(), std::optional<int>(7));
  EXPECT_FALSE(is_our_child(p.pid()));  // reaped
  EXPECT_EQ(co_await p.wait(), 7);
}
}  // namespace

TEST(Subprocess, AnInheritableDescriptorIsNotPassedToTheChild) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);  // no O_CLOEXEC
  run_guarded(inheritable_descriptor_not_passed_on(fds[1]));
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(Subprocess, ReturncodeIsSetOnceTheChildExitedWithoutWait) { run_guarded(returncode_without_wait()); }

namespace {
// Python: env={"PATH": "."}, cwd=d runs d/myprog (the PATH entries are tried in the child, after its chdir).
Task<> relative_env_path_with_cwd() {
  char tmpl[] = "/tmp/corio-proc-XXXXXX";
  const char* dir = ::mkdtemp(tmpl);
  PCO_ASSERT(dir != nullptr);
  std::string prog = std::string(dir) + "/myprog";
  {
    FILE* f = std::fopen(prog.c_str(), "w");
    PCO_ASSERT(f != nullptr);
    std::fputs("#!/bin/sh\necho ran\n", f);
    std::fclose(f);
    ::chmod(prog.c_str(), 0755);
  }
  auto o = opts(Stdio::devnull, Stdio::pipe, Stdio::inherit);
  o.cwd = std::string(dir);
  o.env = std::map<std::string, std::string>{{"PATH", "."}};
  auto argv = std::vector<std::string>{"myprog"};
  std::string out = "(threw)";
  try {
    Process p = co_await corio::create_subprocess_exec(argv, o);
    out = (co_await p.communicate()).out;
  } catch (const corio::OSError& e) {
    ADD_FAILURE() << e.what();
  }
  EXPECT_EQ(out, "ran\n");
  ::unlink(prog.c_str());
  ::rmdir(dir);
}
}  // namespace

// A relative PATH entry of env is relative to cwd, where the child looks it up (as Python's).
TEST(Subprocess, ARelativePathEntryOfEnvIsLookedUpInCwd) { run_guarded(relative_env_path_with_cwd()); }
