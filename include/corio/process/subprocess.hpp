// Subprocesses (asyncio.create_subprocess_exec, create_subprocess_shell).
//
// The child's pipes are StreamWriter/StreamReader (non-blocking on corio's side); its exit is watched
// through a pidfd, so wait() suspends the task until the kernel reports the exit — no SIGCHLD handler,
// no polling thread. A Process destroyed before its child was waited for reaps it in the background: a
// task of the running loop, or, where no loop can (none runs, it is closing, or that task is cancelled
// when run() ends), a thread of its own that waits for the exit (asyncio's ThreadedChildWatcher).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "corio/core/task.hpp"
#include "corio/net/stream.hpp"

namespace corio {
namespace detail {
struct ProcessState;
}

// Where a child's standard stream goes: this process's (inherit), a pipe to this process (pipe), /dev/null,
// or, for stderr only, wherever stdout goes (to_stdout: asyncio.subprocess.STDOUT; with out = pipe, out()
// reads both).
enum class Stdio { inherit, pipe, devnull, to_stdout };

struct SubprocessOptions {
  Stdio in = Stdio::inherit;
  Stdio out = Stdio::inherit;
  Stdio err = Stdio::inherit;
  std::optional<std::string> cwd{};
  // The child's whole environment; unset: the parent's.
  std::optional<std::map<std::string, std::string>> env{};
};

struct CommunicateResult {
  std::string out;
  std::string err;
};

class Process {
 public:
  Process() = default;
  Process(Process&& o) noexcept = default;
  Process& operator=(Process&& o) noexcept = default;
  ~Process();

  int pid() const noexcept;
  // The child's standard streams; InvalidStateError unless created with Stdio::pipe. stdout and stderr are
  // pipes; stdin is a Unix socket pair, so writing to a child that exited fails with BrokenPipeError instead
  // of raising SIGPIPE in this process, and in().write_eof() gives the child EOF.
  StreamWriter& in();
  StreamReader& out();
  StreamReader& err();
  // Waits for the child to exit; returns its exit code, or -N when signal N killed it (as asyncio); 255 when
  // somebody else reaped the child (its status is lost then; as asyncio).
  Task<int> wait();
  // Writes input to stdin and closes it, reads stdout and stderr (when piped) to EOF, all at once (no
  // deadlock on large outputs in either direction), then waits for the exit; returncode() is set after.
  Task<CommunicateResult> communicate(std::string input = {});
  // Sends a signal unless the child was already reaped (then does nothing).
  void send_signal(int signo);
  void terminate();  // SIGTERM
  void kill();       // SIGKILL
  // The exit code once the child exited (reaping it then, as Popen.poll()), whether or not anybody waits.
  std::optional<int> returncode() const noexcept;

 private:
  friend Task<Process> create_subprocess_exec(std::vector<std::string>, SubprocessOptions);
  // The child, its pidfd and its pipes, shared with the operations waiting on them: a wait() or
  // communicate() goes on (and returns the exit code) when the Process is moved or destroyed meanwhile. The
  // child is reaped in the background once the last of them is gone without having reaped it.
  std::shared_ptr<detail::ProcessState> s_;
};

// Starts argv[0] (searched in PATH) with argv. Throws OSError naming the program when it cannot be
// started (e.g. "create_subprocess_exec(nosuchprog): No such file or directory"), and corio::Error for
// options it cannot carry out (an argument holding a NUL byte, Stdio::to_stdout for in or out).
Task<Process> create_subprocess_exec(std::vector<std::string> argv, SubprocessOptions options = {});

// Runs `cmd` with /bin/sh -c, as asyncio's create_subprocess_shell: the shell's syntax (pipes, redirections,
// variables) applies, and so does its quoting: never put untrusted text in cmd. A command the shell cannot
// find is the shell's exit code 127, not an exception.
Task<Process> create_subprocess_shell(std::string cmd, SubprocessOptions options = {});

}  // namespace corio
