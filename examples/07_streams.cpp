// 07: the streams API (asyncio's open_connection / start_server / StreamReader / StreamWriter).
//
// The program starts a line server on 127.0.0.1 (port 0: the kernel picks a free port), then talks to it.
// The server answers each line with "echo: <line>"; when the client half-closes (write_eof), it sends a
// last line and closes. Reads suspend only when the buffer cannot answer them; write() never blocks, and
// drain() waits only while too much is buffered. Errors are typed, after Python's OSError family.
#include <cstdio>
#include <string>

#include "corio/corio.hpp"

// "hello\n" -> hello\n, for printing.
std::string show(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return "\"" + out + "\"";
}

corio::Task<> handle_client(corio::StreamReader reader, corio::StreamWriter writer) {
  int lines = 0;
  for (;;) {
    std::string line = co_await reader.readline();
    if (line.empty()) break;  // EOF: the client half-closed
    ++lines;
    writer.write("echo: " + line);
    co_await writer.drain();
  }
  writer.write("bye after " + std::to_string(lines) + (lines == 1 ? " line\n" : " lines\n"));
  writer.close();  // after the buffered data is flushed
  co_await writer.wait_closed();
}

corio::Task<> amain() {
  corio::Server server = co_await corio::start_server(handle_client, "127.0.0.1", 0);
  const std::uint16_t port = server.port();
  std::printf("server listening on 127.0.0.1:%u\n", static_cast<unsigned>(port));

  std::puts("1. open_connection, write + drain, readline:");
  auto [reader, writer] = co_await corio::open_connection("127.0.0.1", port);
  std::printf("    connected to %s\n", writer.peername().c_str());
  writer.write("hello\n");
  co_await writer.drain();
  std::printf("    readline() -> %s\n", show(co_await reader.readline()).c_str());

  std::puts("2. readexactly and readuntil:");
  writer.write("abcdefgh\n");
  writer.write("key=value;rest\n");
  std::printf("    readexactly(10) -> %s\n", show(co_await reader.readexactly(10)).c_str());
  std::printf("    readuntil(\"\\n\") -> %s\n", show(co_await reader.readuntil("\n")).c_str());
  std::printf("    readuntil(\";\") -> %s\n", show(co_await reader.readuntil(";")).c_str());
  std::printf("    readline() -> %s\n", show(co_await reader.readline()).c_str());

  std::puts("3. write_eof (half-close): the server sees EOF, we can still read its answer:");
  writer.write_eof();
  std::printf("    readline() -> %s\n", show(co_await reader.readline()).c_str());
  std::printf("    readline() -> %s, at_eof() = %s\n", show(co_await reader.readline()).c_str(),
              reader.at_eof() ? "true" : "false");
  writer.close();
  co_await writer.wait_closed();

  std::puts("4. bad input:");
  {
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port);
    r.set_limit(32);  // this reader accepts lines up to 32 bytes
    w.write(std::string(100, 'x') + "\n");
    try {
      co_await r.readline();
    } catch (const corio::LimitOverrunError& e) {
      std::printf("    a 107-byte echo with limit 32: LimitOverrunError (\"%s\", consumed %zu)\n", e.what(),
                  e.consumed());
    }
    // The line stays in the buffer: take it another way.
    std::string rest = co_await r.readexactly(107);
    std::printf("    the data was kept: readexactly(107) -> %zu bytes\n", rest.size());
    w.write_eof();
    try {
      co_await r.readexactly(1000);
    } catch (const corio::IncompleteReadError& e) {
      std::printf("    readexactly(1000) at EOF: IncompleteReadError, partial() = %s\n",
                  show(e.partial()).c_str());
    }
  }

  std::puts("5. close the server, then connect again:");
  server.close();
  co_await server.wait_closed();  // listener closed, every connection ended
  try {
    co_await corio::open_connection("127.0.0.1", port);
  } catch (const corio::ConnectionRefusedError& e) {
    std::printf("    ConnectionRefusedError: %s (errno %d)\n", e.what(), e.code());
  }
}

int main() { corio::run(amain()); }
