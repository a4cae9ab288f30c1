// 09: subprocesses and threads (asyncio.create_subprocess_exec, asyncio.to_thread).
//
// create_subprocess_exec starts a program with its standard streams as pipes (Stdio::pipe) read and
// written through the loop; the child's exit is watched through a pidfd, so waiting costs no thread and no
// SIGCHLD handler. to_thread runs a blocking function on the loop's thread pool and returns its result to
// the awaiting task; the loop keeps running other tasks meanwhile.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

double now() { return corio::get_running_loop().time(); }

// A blocking function: it would stall the loop if called directly from a task.
long count_primes_blocking(long limit) {
  long count = 0;
  for (long n = 2; n < limit; ++n) {
    bool prime = true;
    for (long d = 2; d * d <= n && prime; ++d) prime = n % d != 0;
    count += prime;
  }
  std::this_thread::sleep_for(100ms);  // and some blocking I/O, say
  return count;
}

corio::Task<> ticker(int& ticks) {
  for (;;) {
    co_await corio::sleep(10ms);
    ++ticks;
  }
}

std::string indent(const std::string& text) {
  std::string out = "      | ";
  for (std::size_t i = 0; i < text.size(); ++i) {
    out += text[i];
    if (text[i] == '\n' && i + 1 < text.size()) out += "      | ";
  }
  return out;
}

corio::Task<> amain() {
  std::puts("1. /bin/sh -c \"...\" with communicate(): stdin in, stdout and stderr out:");
  std::vector<std::string> argv = {"/bin/sh", "-c",
                                   "echo \"shell pid $$\"; tr a-z A-Z; echo 'a warning' >&2; exit 3"};
  corio::SubprocessOptions opts;  // asyncio: stdin=PIPE, stdout=PIPE, stderr=PIPE
  opts.in = opts.out = opts.err = corio::Stdio::pipe;
  corio::Process proc = co_await corio::create_subprocess_exec(std::move(argv), opts);
  corio::CommunicateResult res = co_await proc.communicate("hello from corio\nsecond line\n");
  std::printf("    pid %d exited with %d\n", proc.pid(), proc.returncode().value_or(-999));
  std::printf("    stdout:\n%s", indent(res.out).c_str());
  std::printf("    stderr:\n%s", indent(res.err).c_str());

  std::puts("2. reading a child's output line by line, then wait():");
  std::vector<std::string> seq = {"/bin/sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.05; done"};
  corio::SubprocessOptions out_only;
  out_only.out = corio::Stdio::pipe;
  corio::Process lines = co_await corio::create_subprocess_exec(std::move(seq), out_only);
  const double start = now();
  for (;;) {
    std::string line = co_await lines.out().readline();
    if (line.empty()) break;
    line.pop_back();
    std::printf("    %.2f s: %s\n", now() - start, line.c_str());
  }
  std::printf("    wait() -> %d\n", co_await lines.wait());

  std::puts("3. a program that does not exist:");
  std::vector<std::string> missing = {"corio-no-such-program"};
  try {
    co_await corio::create_subprocess_exec(std::move(missing));
  } catch (const corio::OSError& e) {
    std::printf("    OSError: %s\n", e.what());
  }

  std::puts("4. to_thread: a blocking call on the thread pool while the loop keeps ticking:");
  int ticks = 0;
  corio::TaskHandle<> tick = corio::create_task(ticker(ticks));
  const double t = now();
  long primes = co_await corio::to_thread(count_primes_blocking, 200'000L);
  std::printf("    %ld primes below 200,000 in %.2f s; the loop ticked %d times (every 10 ms) meanwhile\n",
              primes, now() - t, ticks);
  tick.cancel();
}

int main() { corio::run(amain()); }
