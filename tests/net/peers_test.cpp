// Interoperability with peers nobody here wrote: a Python asyncio server (corio as the client), and socat
// and OpenBSD netcat as clients of a corio server. Everything on 127.0.0.1, ephemeral ports. The child
// processes run off the loop thread (corio::to_thread), so the loop keeps serving while they talk.
//
// Lambdas with non-trivial captures are named before being passed inside a co_await expression: g++ 12
// destroys such a lambda temporary twice (a compiler bug, reproducible without corio).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "corio/net/errors.hpp"
#include "corio/net/server.hpp"
#include "corio/net/stream.hpp"
#include "corio/sync/thread.hpp"
#include "net_test_util.hpp"

extern char** environ;

using namespace std::chrono_literals;
using corio::StreamReader;
using corio::StreamWriter;
using corio::Task;
using corio_test::run_guarded;

namespace {

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

// Finds a program on PATH (or takes an absolute path); "" if missing.
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return executable(name) ? name : std::string();
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (executable(candidate)) return candidate;
    start = end + 1;
  }
  return std::string();
}

// A child process with stdin and stdout on pipes.
class Child {
 public:
  Child(const std::vector<std::string>& argv) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int rc = ::posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(rc));
    }
  }
  ~Child() {
    close_stdin();
    if (stdout_ >= 0) ::close(stdout_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  void close_stdin() {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
  }
  void write_stdin(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(stdin_, data.data() + off, data.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the child is gone
      off += static_cast<std::size_t>(n);
    }
  }
  // One line from stdout, waiting at most `timeout_ms` (a hang guard); "" on EOF or timeout.
  std::string read_line(int timeout_ms) {
    std::string line;
    char c;
    while (line.empty() || line.back() != '\n') {
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) return std::string();
      if (::read(stdout_, &c, 1) != 1) return line;
      line += c;
    }
    return line;
  }
  // Everything on stdout until EOF, with a poll() hang guard between chunks.
  std::string read_all(int timeout_ms) {
    std::string out;
    char buf[65536];
    for (;;) {
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) return out;
      ssize_t n = ::read(stdout_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return out;
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  // Waits for the exit status (after stdout reached EOF the child is about to exit).
  int wait() {
    int status = 0;
    if (::waitpid(pid_, &status, 0) != pid_) return -1;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
};

// Runs a client program to completion with `input` on its stdin; returns its stdout. Blocking: call it
// through corio::to_thread. The input is written from its own thread so that output never blocks input.
struct ClientRun {
  std::string out;
  int status = -1;
};
ClientRun run_client(const std::vector<std::string>& argv, const std::string& input) {
  Child child(argv);
  std::thread writer([&] {
    child.write_stdin(input);
    child.close_stdin();
  });
  ClientRun r;
  r.out = child.read_all(10000);
  writer.join();
  r.status = child.wait();
  return r;
}

// ---------------------------------------------------------------- Python asyncio server

constexpr const char* kPythonServer = R"PY(
import asyncio, socket, struct

PERIOD = bytes((ord("a") + i * 7 % 26) for i in range(26))

async def handle(reader, writer):
    received = 0
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            received += len(line)
            if line.startswith(b"big "):
                n = int(line[4:])
                writer.write((PERIOD * (n // 26 + 1))[:n])
            elif line == b"partial\n":
                writer.write(b"no newline here")
                await writer.drain()
                writer.close()
                return
            elif line == b"reset\n":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            else:
                writer.write(b"py:" + line)
            await writer.drain()
        writer.write(b"eof after %d bytes\n" % received)
        await writer.drain()
    except ConnectionError:
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
)PY";

class PythonPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!executable("/usr/bin/python3")) GTEST_SKIP() << "/usr/bin/python3 is not installed";
    child_ = std::make_unique<Child>(std::vector<std::string>{"/usr/bin/python3", "-c", kPythonServer});
    std::string line = child_->read_line(10000);
    port_ = static_cast<std::uint16_t>(std::atoi(line.c_str()));
    ASSERT_NE(port_, 0) << "the Python server did not print its port: '" << line << "'";
  }
  void TearDown() override { child_.reset(); }  // kills it

  std::unique_ptr<Child> child_;
  std::uint16_t port_ = 0;
};

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i * 7 % 26);
  return s;
}

TEST_F(PythonPeer, LineRoundTrips) {
  run_guarded([](std::uint16_t port) -> Task<> {
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port);
    for (int i = 0; i < 50; ++i) {
      w.write("line " + std::to_string(i) + "\n");
      EXPECT_EQ(co_await r.readline(), "py:line " + std::to_string(i) + "\n");
    }
    // Several lines in one write come back as several lines.
    w.write("a\nb\nc\n");
    EXPECT_EQ(co_await r.readuntil("py:c\n"), "py:a\npy:b\npy:c\n");
  }(port_));
}

TEST_F(PythonPeer, WriteEofReachesPythonWhichStillAnswers) {
  run_guarded([](std::uint16_t port) -> Task<> {
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port);
    w.write("x\n");
    EXPECT_EQ(co_await r.readline(), "py:x\n");
    w.write_eof();
    EXPECT_EQ(co_await r.readline(), "eof after 2 bytes\n");
    EXPECT_EQ(co_await r.read(), "");
    EXPECT_TRUE(r.at_eof());
  }(port_));
}

TEST_F(PythonPeer, LargePayloadFromPython) {
  run_guarded([](std::uint16_t port) -> Task<> {
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port);
    constexpr std::size_t kSize = 3 << 20;
    w.write("big " + std::to_string(kSize) + "\n");
    std::string got = co_await r.readexactly(kSize);
    EXPECT_EQ(got.size(), kSize);
    EXPECT_TRUE(got == pattern(kSize));
  }(port_));
}

TEST_F(PythonPeer, LargePayloadToPythonWithDrain) {
  run_guarded([](std::uint16_t port) -> Task<> {
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port);
    // 2 MiB of numbered lines; Python echoes each with a prefix while we are still writing. Each must come
    // back whole and in order, and then Python's count of what it received, after our EOF.
    constexpr int kLines = 32 * 1024;
    auto numbered = [](int i) {
      std::string n = std::to_string(i);
      return std::string(8 - n.size(), '0') + n + std::string(55, 'z') + "\n";  // 64 bytes
    };
    auto reader = corio::create_task([](StreamReader& r, int n, decltype(numbered) numbered) -> Task<int> {
      int ok = 0;
      for (int i = 0; i < n; ++i) ok += co_await r.readline() == "py:" + numbered(i);
      co_return ok;
    }(r, kLines, numbered));
    for (int i = 0; i < kLines; ++i) {
      w.write(numbered(i));
      if (i % 256 == 0) co_await w.drain();
    }
    co_await w.drain();
    EXPECT_EQ(co_await reader, kLines);
    w.write_eof();
    EXPECT_EQ(co_await r.readline(), "eof after " + std::to_string(kLines * 64) + " bytes\n");
  }(port_));
}

TEST_F(PythonPeer, PartialLineAtEofFromPython) {
  run_guarded([](std::uint16_t port) -> Task<> {
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port);
    w.write("partial\n");
    EXPECT_EQ(co_await r.readline(), "no newline here");
    EXPECT_EQ(co_await r.readline(), "");
  }(port_));
}

TEST_F(PythonPeer, PythonAbortIsAConnectionReset) {
  run_guarded([](std::uint16_t port) -> Task<> {
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port);
    w.write("reset\n");
    bool reset = false;
    try {
      (void)co_await r.readline();
    } catch (const corio::ConnectionResetError&) {
      reset = true;
    }
    EXPECT_TRUE(reset);
  }(port_));
}

TEST_F(PythonPeer, ManyConcurrentClients) {
  run_guarded([](std::uint16_t port) -> Task<> {
    std::vector<corio::TaskHandle<bool>> clients;
    for (int i = 0; i < 50; ++i) {
      clients.push_back(corio::create_task([](std::uint16_t port, int i) -> Task<bool> {
        auto [r, w] = co_await corio::open_connection("127.0.0.1", port);
        std::string msg = "client " + std::to_string(i) + "\n";
        w.write(msg);
        bool ok = co_await r.readline() == "py:" + msg;
        w.close();
        co_return ok;
      }(port, i)));
    }
    int ok = 0;
    for (auto& c : clients) ok += co_await c;
    EXPECT_EQ(ok, 50);
  }(port_));
}

// ---------------------------------------------------------------- socat and netcat as clients

// A corio line server: "corio:" + each line; on the client's EOF, a summary line, then close.
Task<corio::Server> start_line_server() {
  co_return co_await corio::start_server(
      [](StreamReader r, StreamWriter w) -> Task<> {
        std::size_t lines = 0;
        for (;;) {
          std::string line = co_await r.readline();
          if (line.empty()) break;
          ++lines;
          if (line.rfind("big ", 0) == 0) {
            w.write(pattern(std::stoul(line.substr(4))));
          } else {
            w.write("corio:" + line);
          }
          co_await w.drain();
        }
        w.write("bye after " + std::to_string(lines) + " lines\n");
        co_await w.drain();
        w.close();
        co_await w.wait_closed();
      },
      "127.0.0.1", 0);
}

std::string numbered_lines(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "line " + std::to_string(i) + "\n";
  return s;
}

TEST(ExternalClients, Socat) {
  std::string socat = find_program("socat");
  if (socat.empty()) GTEST_SKIP() << "socat is not installed (scripts/setup installs it)";
  run_guarded([](std::string socat) -> Task<> {
    corio::Server server = co_await start_line_server();
    std::string target = "TCP:127.0.0.1:" + std::to_string(server.port());
    std::string input = numbered_lines(100);
    auto job = [socat, target, input] { return run_client({socat, "-t", "5", "-", target}, input); };
    ClientRun run = co_await corio::to_thread(std::move(job));
    std::string expected;
    for (int i = 0; i < 100; ++i) expected += "corio:line " + std::to_string(i) + "\n";
    expected += "bye after 100 lines\n";
    EXPECT_EQ(run.out, expected);
    EXPECT_EQ(run.status, 0);
  }(socat));
}

TEST(ExternalClients, SocatReceivesALargePayload) {
  std::string socat = find_program("socat");
  if (socat.empty()) GTEST_SKIP() << "socat is not installed (scripts/setup installs it)";
  run_guarded([](std::string socat) -> Task<> {
    corio::Server server = co_await start_line_server();
    std::string target = "TCP:127.0.0.1:" + std::to_string(server.port());
    constexpr std::size_t kSize = 2 << 20;
    auto job = [socat, target] {
      return run_client({socat, "-t", "5", "-", target}, "big " + std::to_string(kSize) + "\n");
    };
    ClientRun run = co_await corio::to_thread(std::move(job));
    EXPECT_EQ(run.out.size(), kSize + std::string("bye after 1 lines\n").size());
    EXPECT_TRUE(run.out.substr(0, kSize) == pattern(kSize));
    EXPECT_EQ(run.out.substr(kSize), "bye after 1 lines\n");
  }(socat));
}

TEST(ExternalClients, Netcat) {
  std::string nc = find_program("nc");
  if (nc.empty()) GTEST_SKIP() << "nc (netcat-openbsd) is not installed (scripts/setup installs it)";
  run_guarded([](std::string nc) -> Task<> {
    corio::Server server = co_await start_line_server();
    std::string port = std::to_string(server.port());
    std::string input = numbered_lines(20) + "no newline at the end";
    auto job = [nc, port, input] { return run_client({nc, "-N", "127.0.0.1", port}, input); };
    ClientRun run = co_await corio::to_thread(std::move(job));
    std::string expected;
    for (int i = 0; i < 20; ++i) expected += "corio:line " + std::to_string(i) + "\n";
    expected += "corio:no newline at the end";  // readline's partial line at EOF, echoed
    expected += "bye after 21 lines\n";
    EXPECT_EQ(run.out, expected);
    EXPECT_EQ(run.status, 0);
  }(nc));
}

TEST(ExternalClients, SeveralNetcatsAtOnce) {
  std::string nc = find_program("nc");
  if (nc.empty()) GTEST_SKIP() << "nc (netcat-openbsd) is not installed (scripts/setup installs it)";
  run_guarded([](std::string nc) -> Task<> {
    corio::Server server = co_await start_line_server();
    std::string port = std::to_string(server.port());
    std::vector<corio::TaskHandle<ClientRun>> runs;
    for (int i = 0; i < 4; ++i) {
      std::string input = "client " + std::to_string(i) + "\n";
      runs.push_back(corio::create_task(corio::to_thread([nc, port, input] {
        return run_client({nc, "-N", "127.0.0.1", port}, input);
      })));
    }
    for (int i = 0; i < 4; ++i) {
      ClientRun run = co_await runs[i];
      EXPECT_EQ(run.out, "corio:client " + std::to_string(i) + "\nbye after 1 lines\n");
    }
  }(nc));
}

}  // namespace
