// TCP and Unix streams: StreamReader / StreamWriter and open_connection (asyncio's streams API).
//
// A connection is one reader and one writer sharing the connection's state; the connection closes when
// both are gone (after flushing what was written) or when the writer is closed. Loop-thread only.
//
// Reading: data arrives in the reader's buffer as the reads it makes return; each read suspends the task
// only when the buffer cannot answer it, and is resumed by the loop on the turn the data (or EOF, or an
// error) arrived. Only one task may wait on a reader at a time (RuntimeError otherwise). Cancelling a read
// loses nothing: bytes that arrived stay in the buffer for the next read.
// Writing: write() never blocks, it sends what the socket takes at once and buffers the rest, which is
// flushed in the background. drain() waits only while more than the high-water mark (64 KiB) is buffered,
// until it falls to the low-water mark (16 KiB), and throws once the peer is gone.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "corio/core/task.hpp"
#include "corio/net/errors.hpp"

namespace corio {

namespace detail {
class StreamState;
void destroy_stream_state(StreamState* s) noexcept;
void add_stream_ref(StreamState* s) noexcept;
bool drop_stream_ref(StreamState* s) noexcept;  // true when that was the last reference

// An owning reference to a connection's state. The count is not atomic (streams are loop-thread only):
// every read, write and background operation takes one, so an atomic shared_ptr count cost a locked
// instruction each time.
class StreamRef {
 public:
  StreamRef() noexcept = default;
  explicit StreamRef(StreamState* s) noexcept : p_(s) {
    if (p_) add_stream_ref(p_);
  }
  // Takes over a reference counted already (add_stream_ref), as an operation in flight holds one.
  struct Adopt {};
  static constexpr Adopt adopt{};
  StreamRef(StreamState* s, Adopt) noexcept : p_(s) {}
  StreamRef(const StreamRef& o) noexcept : StreamRef(o.p_) {}
  StreamRef(StreamRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  StreamRef& operator=(StreamRef o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~StreamRef() { reset(); }
  void reset() noexcept {
    if (StreamState* p = std::exchange(p_, nullptr); p && drop_stream_ref(p)) destroy_stream_state(p);
  }
  StreamState* get() const noexcept { return p_; }
  StreamState& operator*() const noexcept { return *p_; }
  StreamState* operator->() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  StreamState* p_ = nullptr;
};
}  // namespace detail

class StreamReader {
 public:
  static constexpr std::size_t kDefaultLimit = 64 * 1024;

  StreamReader() = default;
  explicit StreamReader(detail::StreamRef s) noexcept;
  StreamReader(StreamReader&& o) noexcept = default;
  StreamReader& operator=(StreamReader&& o) noexcept;
  ~StreamReader();

  // Each read returns a Read: an awaitable (DESIGN.md: Task<std::string>) that does nothing until it is
  // awaited; see StreamReader::Read below.
  class [[nodiscard]] Read;

  // Up to n bytes (at least one, unless at EOF: then ""); n = npos reads until EOF.
  Read read(std::size_t n = npos);
  // One line including its "\n"; at EOF the partial line without it ("" once nothing is left).
  // A line longer than the limit throws LimitOverrunError and leaves the data in the buffer.
  Read readline();
  // Exactly n bytes; EOF first throws IncompleteReadError carrying partial() (which is consumed).
  Read readexactly(std::size_t n);
  // Data up to and including `sep` (which must outlive the await, as for a Task taking a string_view). EOF
  // first: IncompleteReadError with everything read. LimitOverrunError, data kept, as in asyncio: when sep
  // starts past the limit, or is not there and could no longer start within it (more than limit + the
  // length of sep - 1 bytes buffered); consumed() is that start.
  Read readuntil(std::string_view sep = "\n");
  // EOF was received and the buffer is empty. corio reads when a read asks (asyncio reads ahead in the
  // background), so a peer's EOF is seen by the first read that finds it, not before.
  bool at_eof() const noexcept;
  std::size_t limit() const noexcept;
  // Throws std::invalid_argument for 0 (asyncio's ValueError: "Limit cannot be <= 0").
  void set_limit(std::size_t limit);

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

 private:
  detail::StreamRef s_;
};

// What read(), readline(), readexactly() and readuntil() return. Awaiting it answers from the buffer when
// the buffer can (no coroutine frame, no suspension: the common case of a reply already arrived); otherwise
// the awaiting task itself waits as the stream's one reader, and the stream wakes it only once the data
// it asked for (or EOF, or an error) is there. Cancelling it loses nothing: what arrived stays buffered.
// It is movable until awaited, so create_task(), wait_for() and gather() take it as any awaitable, and an
// rvalue converts to Task<std::string>. Awaited once (InvalidStateError the second time).
class [[nodiscard]] StreamReader::Read final : private detail::Waiter {
 public:
  enum class Mode : unsigned char { some, all, exactly, until, line };
  Read(detail::StreamRef s, Mode mode, std::size_t n, std::string_view sep) noexcept
      : s_(std::move(s)), sep_(sep), n_(n), mode_(mode) {}
  Read(Read&& o) noexcept
      : s_(std::move(o.s_)),
        sep_(o.sep_),
        n_(o.n_),
        searched_(o.searched_),
        mode_(o.mode_),
        found_(o.found_) {}
  Read& operator=(Read&&) = delete;
  ~Read();
  // Where a Task is wanted (DESIGN.md's signature): Task<std::string> t = reader.readline();
  operator Task<std::string>() &&;

  bool await_ready();
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    park();
    suspend_on(h);
  }
  std::string await_resume();

 private:
  friend class detail::StreamState;
  bool cancel() override;
  void describe(std::string& out) const override;
  // Whether the buffer now decides this read (enough data, the separator, EOF, an error or the limit).
  bool decided() noexcept;
  // until/line: where the separator starts in the unread data (npos if not there yet).
  std::size_t find_sep() noexcept;
  // until/line, the separator not in the buffer: LimitOverrunError's consumed() if that is an overrun, else
  // 0.
  std::size_t unfound_overrun() const noexcept;
  const char* name() const noexcept;
  void park();
  std::string finish();

  detail::StreamRef s_;
  std::string_view sep_;
  std::size_t n_;
  std::size_t searched_ = 0;  // until/line: how much of the buffer holds no separator (found_: where it is)
  Mode mode_;
  bool found_ = false;  // until/line: the separator was found (at searched_)
};

class StreamWriter {
 public:
  static constexpr std::size_t kHighWater = 64 * 1024;
  static constexpr std::size_t kLowWater = 16 * 1024;

  StreamWriter() = default;
  explicit StreamWriter(detail::StreamRef s) noexcept;
  StreamWriter(StreamWriter&& o) noexcept = default;
  StreamWriter& operator=(StreamWriter&& o) noexcept;
  ~StreamWriter();

  // Queues data; never blocks. Throws RuntimeError after close() or write_eof(). Once the connection is
  // lost (a read or a write failed) the data is dropped, as asyncio's transport does; drain() raises.
  void write(std::string_view data);
  // Waits while more than the high-water mark is buffered; once the peer is gone, throws the error that lost
  // the connection (e.g. ConnectionResetError, BrokenPipeError), the first a read or a write found, every
  // time (as asyncio). On io_uring the ring sends, so a write's error is known a loop turn later than on
  // epoll (where write() sends at once): the drain() right after that write may return, and so may more
  // write()/drain() pairs until the loop turns (an await that suspends); the first drain() after that raises.
  // Returns an awaitable (DESIGN.md: Task<>): nothing happens until it is awaited; then, when there is
  // nothing to wait for and no error (the common case, drain() after every write), it completes in
  // await_ready with no coroutine frame; otherwise it awaits a Task that waits on the stream, so cancellation
  // and awaiting() work as for any Task.
  class [[nodiscard]] Drain;
  Drain drain();
  // Half-close: after the buffered data, the peer reads EOF; reading goes on.
  void write_eof();
  bool can_write_eof() const noexcept { return true; }
  // Closes the connection once the buffered data is flushed, and stops reading at once (as asyncio's):
  // reads get what was buffered already, then EOF once the connection is closed (or its error, if a read
  // or a write found it lost).
  void close();
  // True once close() was called, the connection closed, or it was lost (a read or a write failed).
  bool is_closing() const noexcept;
  // Waits until the connection is closed, or lost (a read or a write failed). A lost connection's error
  // (ConnectionResetError, BrokenPipeError, ...) is thrown then, by every call, as asyncio's wait_closed()
  // raises the exception the transport was lost with; after close() or a clean EOF it returns. The stream
  // reads only when a read asks (asyncio's transport reads all along), so a peer's reset on a connection
  // nobody reads or writes is seen at the next read or write, not here.
  Task<> wait_closed();
  // The peer's address ("127.0.0.1:5000", "[::1]:5000", or the Unix socket path; "" if unknown).
  std::string peername() const;
  // This end's own address (asyncio's get_extra_info("sockname")): "127.0.0.1:49152", a Unix server's path,
  // "" for an unnamed Unix socket, a pipe, or once the stream is closed.
  std::string sockname() const;
  // Bytes written but not yet sent.
  std::size_t buffered() const noexcept;

 private:
  detail::StreamRef s_;
};

class [[nodiscard]] StreamWriter::Drain {
 public:
  explicit Drain(detail::StreamRef s) noexcept : s_(std::move(s)) {}
  bool await_ready();
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    awaiter_.await_suspend(h);
  }
  void await_resume() {
    if (slow_.valid()) awaiter_.await_resume();
  }

 private:
  detail::StreamRef s_;
  Task<> slow_;  // the waiting path, made by await_ready only when needed
  detail::TaskAwaiter<void> awaiter_{};
};

struct ConnectOptions {
  bool tls = false;  // TLS arrives with the tls layer; true throws corio::Error until then
  // Per address tried; TimeoutError when every address timed out.
  std::optional<std::chrono::nanoseconds> timeout{};
};

// Connects over TCP, trying each address host resolves to in turn, with TCP_NODELAY. Throws GaiError
// when host cannot be resolved, the connection error of the last address tried otherwise (e.g.
// ConnectionRefusedError "connect to 127.0.0.1:1: Connection refused").
Task<std::pair<StreamReader, StreamWriter>> open_connection(std::string host, std::uint16_t port,
                                                            ConnectOptions options = {});
Task<std::pair<StreamReader, StreamWriter>> open_unix_connection(std::string path);

namespace detail {
// Wraps a connected non-blocking descriptor (socket or pipe) into a reader/writer pair sharing one state.
std::pair<StreamReader, StreamWriter> make_stream(int fd, bool is_socket, std::string peer);
StreamRef make_stream_state(int fd, bool is_socket, std::string peer);
// Completes once the stream's connection is closed (after what was written has been sent) or lost; unlike
// wait_closed(), never throws the connection's error.
Task<> stream_closed(StreamRef s);
}  // namespace detail

}  // namespace corio
