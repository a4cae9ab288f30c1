// Servers: start_server / start_unix_server (asyncio.start_server) and the Server they return.
//
// Each accepted connection runs the handler as its own task with a StreamReader and StreamWriter; the
// server keeps the handler alive at a fixed address until every connection it served has finished, so
// capturing lambdas are valid handlers. A handler that throws is logged; that connection closes and the
// server keeps serving. When the process runs out of descriptors while accepting (EMFILE/ENFILE), the
// server logs it, backs off for 100 ms and keeps serving once descriptors free up.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "corio/core/task.hpp"
#include "corio/net/stream.hpp"

namespace corio {

namespace detail {
class ServerState;
}

using StreamHandler = std::function<Task<>(StreamReader, StreamWriter)>;

struct ServerOptions {
  int backlog = 100;
  bool reuse_port = false;  // SO_REUSEPORT: several loops (threads) can serve one port
  // At most this many connections at once; further ones wait in the backlog. 0: no limit. (Not asyncio's
  // start_server(limit=), the readers' buffer limit: here that is StreamReader::set_limit in the handler.)
  std::size_t limit = 0;
};

// Dropping the Server closes it: `co_await start_server(...);` alone serves nothing (clang warns).
class [[nodiscard]] Server {
 public:
  Server() = default;
  explicit Server(std::shared_ptr<detail::ServerState> s) noexcept;
  Server(Server&&) noexcept = default;
  // Drops the server held before, as the destructor does.
  Server& operator=(Server&& o) noexcept;
  // Closes the listener if this is the last Server object for it (connections in progress go on). The
  // server's own tasks (accept loops, connections) do not count.
  ~Server();

  // The port of the first listening socket (what port 0 became); 0 for a Unix server.
  std::uint16_t port() const;
  // Stops accepting: the listening sockets close. Connections in progress go on, and so does one whose
  // client connected before close() (already accepted by the kernel or the backend): it is served, within
  // ServerOptions::limit (with the limit reached, clients still waiting in the backlog are reset, as the
  // listener closing resets them in asyncio). One that arrives after close() is reset.
  void close();
  bool is_serving() const noexcept;
  // Returns once the listener is closed and every accepted connection has ended (asyncio >= 3.12): its
  // handler returned and its stream closed, after what the handler wrote was sent (a handler that keeps
  // its writer open keeps wait_closed() waiting, as in asyncio).
  Task<> wait_closed();
  // Serves until close() is called (then returns) or it is cancelled: then, as asyncio, it closes the
  // server, waits for its connections to end, and throws CancelledError. RuntimeError on a closed server.
  Task<> serve_forever();
  // Connections being handled now (a connection counts until its stream has closed).
  std::size_t active_connections() const noexcept;

 private:
  std::shared_ptr<detail::ServerState> s_;
};

// Listens on host:port (port 0: an ephemeral port, see Server::port()) with SO_REUSEADDR and TCP_NODELAY
// on accepted connections. Throws OSError (e.g. "bind 127.0.0.1:80: Permission denied") or GaiError.
Task<Server> start_server(StreamHandler handler, std::string host, std::uint16_t port,
                          ServerOptions options = {});
// Listens on a Unix socket path (a stale socket file there is removed first).
Task<Server> start_unix_server(StreamHandler handler, std::string path, ServerOptions options = {});

}  // namespace corio
