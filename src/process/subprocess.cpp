// Subprocesses: posix_spawn with pipes, exit watched through a pidfd.
#include "corio/process/subprocess.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "../core/blocked_signals.hpp"
#include "corio/core/log.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/gather.hpp"
#include "corio/io/operations.hpp"
#include "corio/net/errors.hpp"
#include "corio/sync/thread.hpp"

extern char** environ;

namespace corio {
namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

struct Pipe {
  int parent = -1;
  int child = -1;
  ~Pipe() {
    if (parent >= 0) ::close(parent);
    if (child >= 0) ::close(child);
  }
};

// The child's end is blocking (most programs expect that); corio's end is non-blocking.
//
// The child's stdin is a Unix socket pair, not a pipe (as libuv does): writing to a pipe whose reader has
// exited raises SIGPIPE, which kills the whole program unless it ignores SIGPIPE, whereas a socket is written
// with MSG_NOSIGNAL and just fails with EPIPE (BrokenPipeError from drain(), ignored by communicate()). It
// also gives StreamWriter::write_eof() its meaning (shutdown(SHUT_WR): the child reads EOF).
// The child's end is moved above 2 first: with the parent's 0 or 1 closed (a daemon), it would land there
// and the child's redirections (stdout to /dev/null onto 1, say) would overwrite it before it is dup'ed
// into place (CPython's bpo-12607).
int above_stdio(int fd) {
  if (fd > 2) return fd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int err = errno;
  ::close(fd);
  if (moved < 0) detail::throw_os_error(err, "fcntl(F_DUPFD_CLOEXEC)");
  return moved;
}

void make_pipe(Pipe& p, bool child_reads) {
  int fds[2];
  if (child_reads) {
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
      detail::throw_os_error(errno, "socketpair");
    ::shutdown(fds[0], SHUT_WR);  // the child only reads its stdin
    p.parent = fds[1];
    p.child = above_stdio(fds[0]);  // (on failure Pipe's destructor closes the parent's end)
    ::fcntl(p.parent, F_SETFL, ::fcntl(p.parent, F_GETFL) | O_NONBLOCK);
    return;
  }
  if (::pipe2(fds, O_CLOEXEC) < 0) detail::throw_os_error(errno, "pipe");
  p.parent = fds[0];
  p.child = above_stdio(fds[1]);
  ::fcntl(p.parent, F_SETFL, ::fcntl(p.parent, F_GETFL) | O_NONBLOCK);
}

// Waits for the child on a thread of its own (signals blocked), for when no loop can.
void reap_on_a_thread(pid_t pid) noexcept {
  try {
    detail::start_thread_without_signals([pid] {
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }).detach();
  } catch (...) {
    // No thread to be had: the child stays a zombie until this program exits.
  }
}

// Owns a child to reap and its pidfd. A parameter of the reaper task rather than a local of its body, so that
// it is destroyed with the task's frame however that ends: cancelled (run() ends) or destroyed (the loop
// closes), even before the task's first step, the child goes to a thread and the pidfd is closed.
struct Reap {
  int pid;
  int pidfd;
  bool done = false;
  Reap(int p, int fd) noexcept : pid(p), pidfd(fd) {}
  Reap(Reap&& o) noexcept
      : pid(o.pid), pidfd(std::exchange(o.pidfd, -1)), done(std::exchange(o.done, true)) {}
  Reap& operator=(Reap&&) = delete;
  ~Reap() {
    if (pidfd >= 0) detail::close_fd(pidfd);
    if (!done) reap_on_a_thread(pid);
  }
};

Task<> reap_in_background(Reap reap) {
  co_await detail::IoAwaiter(detail::OpCode::poll_in, reap.pidfd);
  pid_t r;
  do {
    r = ::waitpid(reap.pid, nullptr, WNOHANG);
  } while (r < 0 && errno == EINTR);
  // Reaped, or somebody else reaped it: nothing left to do. Still running (the wait ended without the child
  // exiting: an error such as the descriptor's closing): ~Reap reaps it on a thread.
  reap.done = r == reap.pid || (r < 0 && errno == ECHILD);
}

}  // namespace

struct detail::ProcessState {
  int pid = -1;
  int pidfd = -1;
  std::shared_ptr<BackendLink> link;  // of the loop that made it: the pidfd closes through it
  std::optional<int> returncode;
  std::optional<StreamWriter> in;
  std::optional<StreamReader> out;
  std::optional<StreamReader> err;

  // Collects the exit status if the child has exited (never blocks); true once returncode is set.
  bool reap() noexcept {
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == ECHILD) {
      // Somebody else reaped it (a waitpid(-1) elsewhere, or SIGCHLD set to SIG_IGN): the exit status is
      // lost. As asyncio, report 255 rather than wait forever on a pidfd that stays readable.
      returncode = 255;
      return true;
    }
    if (r != pid) return false;
    if (WIFEXITED(status))
      returncode = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
      returncode = -WTERMSIG(status);
    else
      returncode = -1;
    return true;
  }

  ~ProcessState() {
    if (pid < 0) return;
    if (!returncode && !reap()) {
      // Not exited yet: reap it when it does, so it never lingers as a zombie.
      bool handed = false;
      if (LoopCore::running_) {
        try {
          std::string name = "reap " + std::to_string(pid);
          // The pidfd's loop forgets it first (when it is another loop: the reaper task closes it in this
          // one, and the other would take the number, come back for a new descriptor, as still watched).
          follow_running_loop(pidfd, link);
          const int fd = std::exchange(pidfd, -1);
          handed = true;  // to the Reap made next, which reaps the child however the task's frame ends
          (void)create_task(reap_in_background(Reap(pid, fd)), std::move(name));
        } catch (...) {
        }
      }
      if (!handed) reap_on_a_thread(pid);
    }
    close_fd(pidfd, link.get());
  }
};

namespace {
std::shared_ptr<detail::ProcessState> state_or_throw(const std::shared_ptr<detail::ProcessState>& s,
                                                     const char* what) {
  if (!s || s->pid < 0) throw InvalidStateError(std::string(what) + ": no process");
  return s;
}

Task<int> wait_for_exit(std::shared_ptr<detail::ProcessState> s) {
  detail::follow_running_loop(s->pidfd, s->link);
  while (!s->returncode) {
    if (s->reap()) break;
    std::int64_t r = co_await detail::IoAwaiter(detail::OpCode::poll_in, s->pidfd);
    if (r < 0 && r != -EINTR)
      detail::throw_os_error(static_cast<int>(-r), "wait for pid " + std::to_string(s->pid));
  }
  co_return *s->returncode;
}

Task<CommunicateResult> communicate_with(std::shared_ptr<detail::ProcessState> s, std::string input) {
  auto feed = [](detail::ProcessState& p, std::string data) -> Task<> {
    if (!p.in) co_return;
    // stdin closed already (in().close(), an earlier communicate()): the input has nowhere to go, as
    // asyncio's write to a closed transport drops it; not an error of communicate().
    if (!p.in->is_closing()) {
      try {
        if (!data.empty()) {
          p.in->write(data);
          co_await p.in->drain();
        }
      } catch (const ConnectionError&) {
        // The child exited without reading everything: as asyncio, not an error of communicate().
      }
      p.in->close();
    }
    try {
      co_await p.in->wait_closed();
    } catch (const ConnectionError&) {
      // (the same: wait_closed() raises the error that lost the pipe)
    }
  };
  auto slurp = [](StreamReader* r) -> Task<std::string> {
    if (!r) co_return std::string();
    co_return co_await r->read();
  };
  auto [fed, out, err] = co_await gather(feed(*s, std::move(input)), slurp(s->out ? &*s->out : nullptr),
                                         slurp(s->err ? &*s->err : nullptr));
  (void)fed;
  co_await wait_for_exit(s);
  co_return CommunicateResult{std::move(out), std::move(err)};
}
}  // namespace

Process::~Process() = default;

int Process::pid() const noexcept { return s_ ? s_->pid : -1; }
// Set once the child has exited, whether or not anybody waits (as asyncio's, which its child watcher sets):
// an exited child is reaped here, as Popen.poll() does.
std::optional<int> Process::returncode() const noexcept {
  if (!s_) return std::nullopt;
  if (!s_->returncode && s_->pid >= 0) s_->reap();
  return s_->returncode;
}

StreamWriter& Process::in() {
  if (!s_ || !s_->in) throw InvalidStateError("Process::in(): stdin is not a pipe (use Stdio::pipe)");
  return *s_->in;
}
StreamReader& Process::out() {
  if (!s_ || !s_->out) throw InvalidStateError("Process::out(): stdout is not a pipe (use Stdio::pipe)");
  return *s_->out;
}
StreamReader& Process::err() {
  if (!s_ || !s_->err) throw InvalidStateError("Process::err(): stderr is not a pipe (use Stdio::pipe)");
  return *s_->err;
}

Task<int> Process::wait() {
  // (Checked at once: the coroutine below holds the state, not this object.)
  return wait_for_exit(state_or_throw(s_, "Process::wait()"));
}

Task<CommunicateResult> Process::communicate(std::string input) {
  return communicate_with(state_or_throw(s_, "Process::communicate()"), std::move(input));
}

void Process::send_signal(int signo) {
  if (!s_ || s_->pid < 0 || s_->returncode) return;
  if (pidfd_send_signal(s_->pidfd, signo) < 0 && errno != ESRCH)
    detail::throw_os_error(errno, "signal " + std::to_string(signo) + " to pid " + std::to_string(s_->pid));
}
void Process::terminate() { send_signal(SIGTERM); }
void Process::kill() { send_signal(SIGKILL); }

Task<Process> create_subprocess_exec(std::vector<std::string> argv, SubprocessOptions options) {
  if (argv.empty()) throw Error("create_subprocess_exec(): argv is empty");
  // What the kernel would cut short or misread is refused, as Python's subprocess raises ValueError.
  const auto has_nul = [](const std::string& x) { return x.find('\0') != std::string::npos; };
  for (std::size_t i = 0; i < argv.size(); ++i)
    if (has_nul(argv[i]))
      throw Error("create_subprocess_exec(): argv[" + std::to_string(i) + "] holds a NUL byte");
  if (options.cwd && has_nul(*options.cwd)) throw Error("create_subprocess_exec(): cwd holds a NUL byte");
  if (options.in == Stdio::to_stdout || options.out == Stdio::to_stdout)
    throw Error("create_subprocess_exec(): Stdio::to_stdout is only for err (stderr)");
  if (options.env)
    for (const auto& [k, v] : *options.env) {
      if (k.empty() || k.find('=') != std::string::npos || has_nul(k))
        throw Error("create_subprocess_exec(): illegal environment variable name '" + k + "'");
      if (has_nul(v)) throw Error("create_subprocess_exec(): the value of " + k + " holds a NUL byte");
    }
  Pipe pin, pout, perr;
  if (options.in == Stdio::pipe) make_pipe(pin, true);
  if (options.out == Stdio::pipe) make_pipe(pout, false);
  if (options.err == Stdio::pipe) make_pipe(perr, false);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  struct FaGuard {
    posix_spawn_file_actions_t* fa;
    ~FaGuard() { posix_spawn_file_actions_destroy(fa); }
  } fa_guard{&fa};
  auto route = [&](Stdio how, Pipe& p, int target, int devnull_flags) {
    if (how == Stdio::pipe)
      posix_spawn_file_actions_adddup2(&fa, p.child, target);
    else if (how == Stdio::devnull)
      posix_spawn_file_actions_addopen(&fa, target, "/dev/null", devnull_flags, 0);
    else if (how == Stdio::to_stdout)  // routed after stdout (the actions run in order): goes where it goes
      posix_spawn_file_actions_adddup2(&fa, 1, target);
  };
  route(options.in, pin, 0, O_RDONLY);
  route(options.out, pout, 1, O_WRONLY);
  route(options.err, perr, 2, O_WRONLY);
  if (options.cwd) posix_spawn_file_actions_addchdir_np(&fa, options.cwd->c_str());
  // The child gets 0, 1 and 2 only, as Python's close_fds=True: a descriptor the program left inheritable
  // (a plain pipe() or open(), a library's) would otherwise keep a pipe's write end open in the child, so
  // that its reader never sees EOF.
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  struct AttrGuard {
    posix_spawnattr_t* a;
    ~AttrGuard() { posix_spawnattr_destroy(a); }
  } attr_guard{&attr};
  // The child gets the mask the program asked for (as Python's children inherit it), less what corio blocked
  // on this thread (the loop's signalfd signals, a helper thread's): a signal the program blocked itself
  // stays blocked. Handlers are reset by exec anyway; signals the program ignores stay ignored (nohup's
  // SIGHUP, a background job's SIGINT), except SIGPIPE and SIGXFSZ, which are set back to default as
  // Python's subprocess does.
  sigset_t current, restore;
  ::pthread_sigmask(SIG_BLOCK, nullptr, &current);
  const sigset_t child_mask = detail::program_mask(current);
  sigemptyset(&restore);
  sigaddset(&restore, SIGPIPE);
  sigaddset(&restore, SIGXFSZ);
  posix_spawnattr_setsigmask(&attr, &child_mask);
  posix_spawnattr_setsigdefault(&attr, &restore);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  std::vector<char*> envp;
  if (options.env) {
    for (auto& [k, v] : *options.env) env_strings.push_back(k + "=" + v);
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
  }
  // With a replaced environment, a bare program name is looked up in that environment's PATH (the default
  // /bin:/usr/bin without one), as Python's subprocess does; posix_spawnp would search this process's.
  std::string program = argv[0];
  if (options.env && program.find('/') == std::string::npos) {
    auto it = options.env->find("PATH");
    std::string path = it != options.env->end() ? it->second : "/bin:/usr/bin";
    std::string found;
    for (std::size_t start = 0; found.empty() && start <= path.size();) {
      std::size_t end = std::min(path.find(':', start), path.size());
      std::string dir = path.substr(start, end - start);
      std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + program;
      // A relative entry is relative to the child's working directory (it executes after the chdir).
      std::string probe = options.cwd && candidate[0] != '/' ? *options.cwd + "/" + candidate : candidate;
      struct stat st {};
      if (::stat(probe.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(probe.c_str(), X_OK) == 0)
        found = candidate;
      start = end + 1;
    }
    if (found.empty())
      detail::throw_os_error(ENOENT, "create_subprocess_exec(" + program + "): not found in the PATH of env");
    program = found;
  }
  pid_t pid = -1;
  int rc =
      ::posix_spawnp(&pid, program.c_str(), &fa, &attr, args.data(), options.env ? envp.data() : environ);
  if (rc != 0) {
    // The child's chdir failing looks the same as a missing program (ENOENT): name the directory then.
    struct stat st {};
    if (options.cwd && (::stat(options.cwd->c_str(), &st) != 0 || ::access(options.cwd->c_str(), X_OK) != 0))
      detail::throw_os_error(errno, "create_subprocess_exec(" + argv[0] + "): cwd " + *options.cwd);
    if (options.cwd && !S_ISDIR(st.st_mode))
      detail::throw_os_error(ENOTDIR, "create_subprocess_exec(" + argv[0] + "): cwd " + *options.cwd);
    detail::throw_os_error(rc, "create_subprocess_exec(" + argv[0] + ")");
  }

  Process p;
  p.s_ = std::make_shared<detail::ProcessState>();
  detail::ProcessState& st = *p.s_;
  st.link = detail::io_backend().link();
  st.pid = pid;
  st.pidfd = pidfd_open(pid);
  if (st.pidfd < 0) {
    int err = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    st.pid = -1;
    detail::throw_os_error(err, "pidfd_open");
  }
  ::fcntl(st.pidfd, F_SETFD, FD_CLOEXEC);
  std::string name = argv[0] + "[" + std::to_string(pid) + "]";
  if (pin.parent >= 0)
    st.in.emplace(detail::make_stream_state(std::exchange(pin.parent, -1), true, name + " stdin"));
  if (pout.parent >= 0)
    st.out.emplace(detail::make_stream_state(std::exchange(pout.parent, -1), false, name + " stdout"));
  if (perr.parent >= 0)
    st.err.emplace(detail::make_stream_state(std::exchange(perr.parent, -1), false, name + " stderr"));
  co_return p;
}

Task<Process> create_subprocess_shell(std::string cmd, SubprocessOptions options) {
  if (cmd.find('\0') != std::string::npos)
    throw Error("create_subprocess_shell(): the command holds a NUL byte");
  std::vector<std::string> argv{"/bin/sh", "-c", std::move(cmd)};
  co_return co_await create_subprocess_exec(std::move(argv), std::move(options));
}

}  // namespace corio
