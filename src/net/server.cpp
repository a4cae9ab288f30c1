// Servers: one accept task per listening socket, one task per connection.
#include "corio/net/server.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "corio/core/log.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/io/operations.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/socket.hpp"
#include "corio/sync/detail/wait_list.hpp"

namespace corio {
namespace detail {

class ServerState : public std::enable_shared_from_this<ServerState> {
 public:
  ServerState(StreamHandler handler, ServerOptions options, bool is_unix)
      : handler_(std::move(handler)), options_(options), unix_(is_unix) {}
  ~ServerState() { close_listeners(); }

  StreamHandler handler_;  // fixed address for the server's whole life
  ServerOptions options_;
  bool unix_;
  std::string unix_path_;
  dev_t unix_dev_ = 0;  // the socket file this server made: only that one is removed on close
  ino_t unix_ino_ = 0;
  std::vector<int> listeners_;
  std::vector<TaskHandle<void>> acceptors_;
  std::vector<char> backing_off_;  // acceptors_[i] sleeps after a failed accept (close() cancels it)
  std::size_t active_ = 0;
  std::size_t accepting_ = 0;  // accept loops not yet finished
  std::size_t handles_ = 0;    // Server objects referring to this state
  bool closed_ = false;
  WaitList idle_waiters_;         // wait_closed: no listener and no connection left
  WaitList slot_waiters_;         // accept loops waiting for a connection slot (options.limit)
  WaitList close_waiters_;        // serve_forever
  bool serving_forever_ = false;  // a serve_forever() is running
  // The loop's backend while it exists: the listeners are forgotten there even if the server is closed or
  // destroyed between two runs of its loop.
  std::shared_ptr<BackendLink> link_ = io_backend().link();

  void start() {
    backing_off_.assign(listeners_.size(), 0);
    for (std::size_t i = 0; i < listeners_.size(); ++i)
      acceptors_.push_back(
          create_task(accept_loop(AcceptorRef(shared_from_this()), listeners_[i], i), "server accept"));
  }

  // Coroutine parameters are destroyed with the frame even when the task is cancelled before its first
  // step (close() right after start_server): the counts must not depend on the body running.
  struct AcceptorRef {
    std::shared_ptr<ServerState> s;
    explicit AcceptorRef(std::shared_ptr<ServerState> st) : s(std::move(st)) { ++s->accepting_; }
    AcceptorRef(AcceptorRef&& o) noexcept = default;
    AcceptorRef& operator=(AcceptorRef&&) = delete;
    ~AcceptorRef() {
      if (!s) return;
      --s->accepting_;
      s->maybe_idle();
    }
  };
  // One accepted connection: owns the descriptor until the stream takes it, and counts as active until
  // destroyed, however the connection task ends (even cancelled before it started).
  struct ConnectionRef {
    std::shared_ptr<ServerState> s;
    int fd;
    ConnectionRef(std::shared_ptr<ServerState> st, int f) : s(std::move(st)), fd(f) { ++s->active_; }
    ConnectionRef(ConnectionRef&& o) noexcept : s(std::move(o.s)), fd(std::exchange(o.fd, -1)) {}
    ConnectionRef& operator=(ConnectionRef&&) = delete;
    ~ConnectionRef() {
      close_fd(fd);
      if (s) s->connection_ended();
    }
  };

  // Stops listening. A connection whose client connected before close() is served: the accept loops are
  // not cancelled (an accept that completed before close() hands its connection on), and what the backend
  // holds (io_uring's multishot accept takes several ahead) or the kernel's backlog holds is taken here,
  // within the connection limit. (They were closed unserved: on io_uring, whose accepts run in the kernel's
  // task work at the loop's next poll, a client that had just connected read a clean EOF.) A connection
  // that arrives after that is reset. The accept loops end on their own: their accepts end with the
  // listener (or, waiting for a slot or backing off, they are woken or cancelled).
  void close() {
    if (closed_) return;
    closed_ = true;
    take_accepted();
    for (std::size_t i = 0; i < acceptors_.size(); ++i)
      if (backing_off_[i]) acceptors_[i].cancel();
    close_listeners();
    slot_waiters_.wake_all();
    close_waiters_.wake_all();
    maybe_idle();
  }
  // The connections accepted already, served (within the limit, if any), while this loop runs.
  void take_accepted() {
    if (!LoopCore::running_ || !link_->backend || &io_backend() != link_->backend) return;
    for (int lfd : listeners_) {
      while (!options_.limit || active_ < options_.limit) {
        int fd = accept_now(lfd);
        if (fd < 0) break;
        serve(fd);
      }
    }
  }
  void serve(int fd) {
    if (!unix_) set_nodelay(fd);
    std::string name = "connection " + (unix_ ? std::string("unix client") : peer_name(fd));
    create_task(serve_connection(ConnectionRef(shared_from_this(), fd)), std::move(name));
  }
  void close_listeners() noexcept {
    for (int fd : listeners_) close_fd(fd, link_.get());
    listeners_.clear();
    if (!unix_path_.empty()) {
      // Another server may have replaced the file since (after removing it as stale): leave that one.
      struct stat st {};
      if (::stat(unix_path_.c_str(), &st) == 0 && st.st_dev == unix_dev_ && st.st_ino == unix_ino_)
        ::unlink(unix_path_.c_str());
      unix_path_.clear();
    }
  }
  void maybe_idle() {
    if (idle()) idle_waiters_.wake_all();
  }
  bool idle() const noexcept { return closed_ && active_ == 0 && accepting_ == 0; }

  static Task<> accept_loop(AcceptorRef ref, int lfd, std::size_t index) {
    ServerState* self = ref.s.get();
    bool logged_exhaustion = false;
    while (!self->closed_) {
      int fd;
      if (self->options_.limit) {
        // With a limit, connections beyond it wait in the kernel's backlog, not accepted ahead of time: the
        // loop waits for a client, then for a free slot, and only then accepts, so that no slot is held by
        // a loop that has nobody to accept (with an IPv4 and an IPv6 listener and a limit of 1, the idle
        // one's loop held the slot, and a client of the other was not served).
        std::int64_t r = co_await IoAwaiter(OpCode::poll_in, lfd);
        if (self->closed_ || r == -ECANCELED || r == -EBADF) break;  // (the listener was closed)
        while (self->active_ >= self->options_.limit && !self->closed_) {
          WaitList::Node node(self->slot_waiters_, "server connection limit");
          co_await node;
        }
        if (self->closed_) break;
        fd = r < 0 ? static_cast<int>(r) : accept_now(lfd);
        if (fd == -EAGAIN || fd == -EWOULDBLOCK) {
          self->slot_waiters_.wake_one();  // the client went away: the slot may serve another listener's
          continue;
        }
      } else {
        fd = co_await accept_socket(lfd);
      }
      if (fd >= 0) {  // (served even when close() came meanwhile: it was accepted)
        logged_exhaustion = false;
        self->serve(fd);
        continue;
      }
      int err = -fd;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // Out of descriptors: the pending connection stays in the backlog; try again once some are freed.
        if (!logged_exhaustion)
          log(std::string("server: accept failed (") + std::strerror(err) + "), backing off");
        logged_exhaustion = true;
        co_await self->back_off(index);
        continue;
      }
      if (err == ECONNABORTED || err == EINTR || err == EPROTO || err == EPERM) continue;
      if (err == EBADF || err == EINVAL || err == ECANCELED) break;  // the listener was closed
      log(std::string("server: accept failed: ") + std::strerror(err));
      co_await self->back_off(index);
    }
  }

  // After a failed accept: a pause, which close() cuts short (cancels).
  Task<> back_off(std::size_t index) {
    if (closed_) co_return;
    backing_off_[index] = 1;
    struct Clear {
      char& flag;
      ~Clear() { flag = 0; }
    } clear{backing_off_[index]};
    co_await sleep(std::chrono::milliseconds(100));
  }

  static Task<> serve_connection(ConnectionRef conn) {
    ServerState* self = conn.s.get();
    std::string peer = self->unix_ ? std::string("unix client") : peer_name(conn.fd);
    StreamRef stream;
    try {
      // (A Unix client has no name: peername() is "", as the header says.)
      stream = make_stream_state(conn.fd, true, self->unix_ ? std::string() : peer);
      conn.fd = -1;  // the stream owns it now
      co_await self->handler_(StreamReader(stream), StreamWriter(stream));
    } catch (const CancelledError&) {
      throw;
    } catch (const std::exception& e) {
      log("server: handler for " + peer + " failed: " + e.what());
      close_after_failure(stream);
    } catch (...) {
      log("server: handler for " + peer + " failed: unknown exception");
      close_after_failure(stream);
    }
    // The connection counts (active_connections(), the limit, wait_closed()) until its stream has closed,
    // which is once what the handler wrote has been sent, as asyncio's wait_closed() waits for the
    // transports: else wait_closed() returned, run() ended, and the rest of the reply was lost.
    if (stream) co_await stream_closed(std::move(stream));
  }

  // A handler that failed: its connection closes (once what it wrote is sent), even if a StreamWriter of it
  // lives on elsewhere, as asyncio closes the transport when the handler task fails.
  static void close_after_failure(const StreamRef& stream) noexcept {
    if (!stream) return;
    try {
      StreamWriter(stream).close();
    } catch (...) {  // (close() throws nothing on a stream that exists)
    }
  }

  void connection_ended() {
    --active_;
    slot_waiters_.wake_one();
    maybe_idle();
  }
};

namespace {
struct FdGuard {
  int fd;
  ~FdGuard() { close_fd(fd); }
  int release() { return std::exchange(fd, -1); }
};
}  // namespace

}  // namespace detail

Server::Server(std::shared_ptr<detail::ServerState> s) noexcept : s_(std::move(s)) {
  if (s_) ++s_->handles_;
}

Server& Server::operator=(Server&& o) noexcept {
  if (this != &o) {
    Server old(std::move(*this));  // closes the previous server if this was its last handle
    s_ = std::move(o.s_);
  }
  return *this;
}

Server::~Server() {
  // (The accept loops and connections hold the state too: counting shared_ptr owners would never close.)
  if (s_ && --s_->handles_ == 0) s_->close();
}

std::uint16_t Server::port() const {
  if (!s_ || s_->listeners_.empty()) return 0;
  return detail::local_port(s_->listeners_.front());
}

void Server::close() {
  if (s_) s_->close();
}

bool Server::is_serving() const noexcept { return s_ && !s_->closed_; }

std::size_t Server::active_connections() const noexcept { return s_ ? s_->active_ : 0; }

// The waits take the state by value: a task made from wait_closed() or serve_forever() first runs later,
// possibly after this Server object is gone (close, then wait in the background).
namespace {
Task<> server_wait_closed(std::shared_ptr<detail::ServerState> s) {
  if (!s) co_return;
  while (!s->idle()) {
    detail::WaitList::Node node(s->idle_waiters_, "server wait_closed");
    co_await node;
  }
}

Task<> server_serve_forever(std::shared_ptr<detail::ServerState> s) {
  if (!s || s->closed_) throw RuntimeError("serve_forever(): the server is closed");
  // One at a time, as asyncio ("is already being awaited on serve_forever()").
  if (s->serving_forever_)
    throw RuntimeError("serve_forever(): the server is already being served by another call");
  s->serving_forever_ = true;
  struct Clear {
    detail::ServerState* s;
    ~Clear() { s->serving_forever_ = false; }
  } clear{s.get()};
  std::exception_ptr cancelled;
  try {
    while (!s->closed_) {
      detail::WaitList::Node node(s->close_waiters_, "serve_forever");
      co_await node;
    }
  } catch (const CancelledError&) {
    cancelled = std::current_exception();
  }
  if (!cancelled) co_return;  // close() was called
  // Cancelled: as asyncio, close the server and wait for its connections before passing the cancel on.
  s->close();
  co_await server_wait_closed(s);
  std::rethrow_exception(cancelled);
}
}  // namespace

Task<> Server::wait_closed() { return server_wait_closed(s_); }
Task<> Server::serve_forever() { return server_serve_forever(s_); }

Task<Server> start_server(StreamHandler handler, std::string host, std::uint16_t port,
                          ServerOptions options) {
  std::vector<AddrInfo> addrs = co_await detail::resolve(host, std::to_string(port), SOCK_STREAM, AI_PASSIVE);
  // An address listed twice (two equal lines in /etc/hosts) is bound once, as asyncio binds the set of them.
  std::vector<AddrInfo> unique;
  for (const AddrInfo& ai : addrs) {
    auto same = [&](const AddrInfo& u) {
      return u.family == ai.family && u.addrlen == ai.addrlen &&
             std::memcmp(&u.addr, &ai.addr, ai.addrlen) == 0;
    };
    if (std::none_of(unique.begin(), unique.end(), same)) unique.push_back(ai);
  }
  auto state = std::make_shared<detail::ServerState>(std::move(handler), options, false);
  std::exception_ptr passed_over;
  for (AddrInfo ai : unique) {
    // Port 0 on several addresses: the others get the port the first one was given.
    if (port == 0 && !state->listeners_.empty()) {
      std::uint16_t p = htons(detail::local_port(state->listeners_.front()));
      if (ai.family == AF_INET) reinterpret_cast<sockaddr_in*>(&ai.addr)->sin_port = p;
      if (ai.family == AF_INET6) reinterpret_cast<sockaddr_in6*>(&ai.addr)->sin6_port = p;
    }
    // A family the host lacks is passed over while another address serves, as asyncio does (bpo-30945):
    // no IPv6 at all (socket() fails with EAFNOSUPPORT), or no such address here (bind: EADDRNOTAVAIL,
    // "localhost" naming ::1 on a host with IPv6 turned off).
    int sfd = ::socket(ai.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai.protocol);
    if (sfd < 0) {
      if (errno != EAFNOSUPPORT) detail::throw_os_error(errno, "socket for " + ai.to_string());
      passed_over = detail::make_os_error(errno, "socket for " + ai.to_string());
      continue;
    }
    detail::FdGuard fd{sfd};
    int one = 1;
    ::setsockopt(fd.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (options.reuse_port) ::setsockopt(fd.fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ai.family == AF_INET6) ::setsockopt(fd.fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(fd.fd, reinterpret_cast<const sockaddr*>(&ai.addr), ai.addrlen) < 0) {
      if (errno != EADDRNOTAVAIL) detail::throw_os_error(errno, "bind " + ai.to_string());
      passed_over = detail::make_os_error(errno, "bind " + ai.to_string());
      continue;
    }
    if (::listen(fd.fd, options.backlog) < 0) detail::throw_os_error(errno, "listen " + ai.to_string());
    state->listeners_.push_back(fd.release());
  }
  if (state->listeners_.empty()) {
    if (passed_over) std::rethrow_exception(passed_over);
    throw OSError(EADDRNOTAVAIL, "bind " + host + ": no address");
  }
  state->start();
  co_return Server(std::move(state));
}

Task<Server> start_unix_server(StreamHandler handler, std::string path, ServerOptions options) {
  sockaddr_un addr;
  const socklen_t len = detail::unix_address(path, addr, "bind");
  const bool abstract = path[0] == '\0';  // no file: nothing to remove before or after
  struct stat st {};
  if (!abstract && ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
    ::unlink(path.c_str());  // stale socket file
  auto state = std::make_shared<detail::ServerState>(std::move(handler), options, true);
  detail::FdGuard fd{detail::open_socket(AF_UNIX, SOCK_STREAM)};
  if (::bind(fd.fd, reinterpret_cast<sockaddr*>(&addr), len) < 0)
    detail::throw_os_error(errno, "bind " + detail::unix_path_text(path));
  if (::listen(fd.fd, options.backlog) < 0) {
    const int err = errno;
    if (!abstract) ::unlink(path.c_str());  // the file bind() just made
    detail::throw_os_error(err, "listen " + detail::unix_path_text(path));
  }
  if (!abstract && ::stat(path.c_str(), &st) == 0) {
    state->unix_dev_ = st.st_dev;
    state->unix_ino_ = st.st_ino;
  }
  state->listeners_.push_back(fd.release());
  state->unix_path_ = path;
  state->start();
  co_return Server(std::move(state));
}

}  // namespace corio
