// StreamState: one connection's buffers and its two background operations (the read that fills the
// reader's buffer, the write that flushes the writer's). Operations complete into the state, not into an
// awaiting frame, so a cancelled read never loses bytes and writes go on with nobody awaiting.
#include "corio/net/stream.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include "corio/core/detail/runtime.hpp"
#include "corio/io/backend.hpp"
#include "corio/io/operations.hpp"
#include "corio/net/detail/find_separator.hpp"
#include "corio/net/socket.hpp"
#include "corio/sync/detail/wait_list.hpp"

namespace corio {
namespace detail {

class StreamState;

// A stream's read buffer: data_[pos_, size_) is unread. 24 bytes, so that it shares the stream's first
// cache line with everything else a read or a write touches (a std::string and its read position took 40,
// a line of their own). At most 4 GiB: more than that unread is a read error (asyncio's limit is 64 KiB).
class ReadBuffer {
 public:
  static constexpr std::size_t kMax = 0xffffffffu;

  ReadBuffer() = default;
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;
  ~ReadBuffer() { std::free(data_); }

  std::size_t available() const noexcept { return size_ - pos_; }
  std::string_view unread() const noexcept { return {data_ + pos_, available()}; }

  // False (and nothing appended) when the unread data would pass kMax bytes.
  bool append(const char* p, std::size_t n) {
    if (n > cap_ - size_ && !make_room(n)) return false;
    std::memcpy(data_ + size_, p, n);
    size_ += static_cast<std::uint32_t>(n);
    return true;
  }

  // The first n unread bytes (n <= available()).
  std::string take(std::size_t n) {
    std::string out(data_ + pos_, n);
    pos_ += static_cast<std::uint32_t>(n);
    if (pos_ == size_) pos_ = size_ = 0;
    return out;
  }

 private:
  // Room for n more bytes: move the unread data to the front when that makes enough room and the data is
  // small beside the buffer (a copy cheaper than it frees), otherwise grow to twice what is needed.
  bool make_room(std::size_t n) {
    std::size_t unread = available();
    if (n > kMax - unread) return false;
    std::size_t need = unread + n;
    if (need <= cap_ && unread <= cap_ / 2) {
      std::memmove(data_, data_ + pos_, unread);
    } else {
      std::size_t cap = std::min<std::size_t>(std::max<std::size_t>(need * 2, 256), kMax);
      auto* p = static_cast<char*>(std::malloc(cap));
      if (!p) throw std::bad_alloc();
      if (unread) std::memcpy(p, data_ + pos_, unread);
      std::free(data_);
      data_ = p;
      cap_ = static_cast<std::uint32_t>(cap);
    }
    pos_ = 0;
    size_ = static_cast<std::uint32_t>(unread);
    return true;
  }

  char* data_ = nullptr;
  std::uint32_t size_ = 0;
  std::uint32_t cap_ = 0;
  std::uint32_t pos_ = 0;
};

static_assert(sizeof(ReadBuffer) == 24);

// A stream's two background operations: the read that fills the reader's buffer and the write that flushes
// the writer's. They are StreamState's first two bases, so that an op finds its stream without a pointer
// and holds its reference without a member: a send or a receive touches only the op's first cache line.
struct alignas(64) StreamReadOp : IoOp {
  void complete() final;
};
struct alignas(64) StreamWriteOp : IoOp {
  void complete() final;
};

class alignas(64) StreamState final : private StreamReadOp, private StreamWriteOp {
  friend struct StreamReadOp;
  friend struct StreamWriteOp;

 public:
  StreamState(int fd, bool is_socket, std::string peer)
      : fd_(fd),
        be_(&io_backend()),
        loop_serial_(LoopCore::running_->serial_),
        socket_(is_socket),
        peer_(std::move(peer)),
        link_(be_->link()) {
    // The read op is the same call every time (the backends set only result and data): set it up once.
    StreamReadOp& op = read_op();
    op.code = socket_ ? OpCode::recv : OpCode::read;
    op.fd = fd_;
    op.buf = nullptr;
    op.len = 64 * 1024;
    op.flags = 0;
    // Likewise the write op's call; only buf and len change.
    StreamWriteOp& w = write_op();
    w.code = socket_ ? OpCode::send : OpCode::write;
    w.fd = fd_;
    w.flags = 0;
  }
  ~StreamState() { close_now(); }
  StreamState(const StreamState&) = delete;
  StreamState& operator=(const StreamState&) = delete;

  StreamReadOp& read_op() noexcept { return *this; }
  StreamWriteOp& write_op() noexcept { return *this; }

  // ---- reading

  // A stream works on the loop that made it, while that loop runs: its backend is gone after the loop
  // closes (a stream returned out of run(), say). Closing stays allowed everywhere.
  // The running loop is the one that made this stream. The address alone does not tell (run() makes each
  // loop on its stack: the next run()'s loop is often at the same address); the loop's serial does, and a
  // loop's backend lives as long as the loop.
  bool on_own_loop() const noexcept {
    const LoopCore* l = LoopCore::running_;
    return l && l->serial_ == loop_serial_;
  }
  void check_loop() const {
    if (!on_own_loop()) throw RuntimeError("stream used outside the running event loop that created it");
  }

  std::size_t available() const noexcept { return rbuf_.available(); }
  std::string_view unread() const noexcept { return rbuf_.unread(); }
  std::string take(std::size_t n) { return rbuf_.take(std::min(n, available())); }

  void commit_read(std::int64_t r, const char* data) {
    if (r > 0) {
      if (!rbuf_.append(data, static_cast<std::size_t>(r))) {
        rerr_ = std::make_exception_ptr(
            Error("read from " + (peer_.empty() ? "stream" : peer_) + ": more than 4 GiB unread"));
        eof_ = true;
        lost_before_eof_ = true;
      }
    } else if (r == 0) {
      // A write found the connection reset first and took the socket's error: this EOF is that reset (as
      // asyncio's reader gets the connection's error), not a clean end of the stream.
      if (write_failed_ && !rerr_) {
        rerr_ = werr_;
        lost_before_eof_ = true;
      }
      eof_ = true;
    } else if (r != -ECANCELED) {
      rerr_ = make_os_error(static_cast<int>(-r), "read from " + (peer_.empty() ? "stream" : peer_));
      lose(rerr_);
      eof_ = true;
      lost_before_eof_ = true;
      drain_waiters_.wake_all();  // (drain raises it: the connection is gone)
      close_waiters_.wake_all();  // (wait_closed: the connection is gone)
    }
  }
  void on_read(std::int64_t r, const char* data) {
    commit_read(r, data);
    if (reader_ && reader_->suspended()) {
      // Wake the reader only once the buffer decides its read; until then keep reading for it.
      if (fd_ >= 0 && (r == -ECANCELED || !reader_->decided()))
        start_read();
      else
        reader_->wake();
    }
  }
  void start_read() {
    if (read_op().pending || close_requested_) return;  // (close() stops reading, as asyncio's)
    be_->submit(read_op());  // (completes on a later turn; if it throws, no reference was taken)
    ++refs_;                 // the op's reference, adopted back in StreamReadOp::complete()
  }

  void throw_read_error() {
    if (rerr_) std::rethrow_exception(rerr_);
  }

  // ---- writing
  std::size_t buffered() const noexcept { return wbuf_.size() + inflight_.size() - inflight_pos_; }

  void write(std::string_view data) {
    if (close_requested_ || closed_) throw RuntimeError("write() on a closed StreamWriter");
    if (eof_requested_) throw RuntimeError("write() after write_eof()");
    check_loop();
    if (lost_ || data.empty()) return;  // the peer is gone (a read or a write found it): drain() reports it
    // With no write in flight nothing is queued (on_write restarts the op while anything is left, and a
    // failed or closed stream returned above): so the queue's strings, a cache line of their own, are not
    // read on this path.
    if (!write_op().pending) {
      assert(buffered() == 0);
      write_op().buf = const_cast<char*>(data.data());
      write_op().len = data.size();
      if (be_->try_now(write_op())) {
        if (write_op().result < 0) {
          fail_write(static_cast<int>(-write_op().result));
          return;
        }
        data.remove_prefix(static_cast<std::size_t>(write_op().result));
        if (data.empty()) return;
      }
      // The rest goes out as the write in flight (its string keeps its capacity from the last one).
      inflight_.assign(data);
      inflight_pos_ = 0;
      submit_write();
    } else {
      wbuf_.append(data);
    }
    if (buffered() > StreamWriter::kHighWater) paused_ = true;
  }

  void start_write() {
    if (inflight_pos_ == inflight_.size()) {
      inflight_.clear();
      inflight_pos_ = 0;
      inflight_.swap(wbuf_);
    }
    if (inflight_.empty()) return;
    submit_write();
  }

  // Sends inflight_[inflight_pos_..] (not empty) with the write op.
  void submit_write() {
    write_op().buf = inflight_.data() + inflight_pos_;
    write_op().len = inflight_.size() - inflight_pos_;
    be_->submit(write_op());
    ++refs_;  // the op's reference, adopted back in StreamWriteOp::complete()
  }

  void on_write(std::int64_t r) {
    if (r == -ECANCELED) return;
    if (r < 0) {
      fail_write(static_cast<int>(-r));
      return;
    }
    inflight_pos_ += static_cast<std::size_t>(r);
    if (fd_ >= 0 && buffered() > 0) start_write();
    if (paused_ && buffered() <= StreamWriter::kLowWater) {
      paused_ = false;
      drain_waiters_.wake_all();
    }
    if (buffered() == 0) flushed();
  }

  void fail_write(int err) {
    werr_ = make_os_error(err, "write to " + (peer_.empty() ? "stream" : peer_));
    // EOF was read before: reads from now on raise this error, as asyncio's reader gets the connection's
    // (commit_read does the same when the EOF comes after).
    if (eof_ && !rerr_) rerr_ = werr_;
    write_failed_ = true;
    lose(werr_);
    wbuf_.clear();
    inflight_.clear();
    inflight_pos_ = 0;
    paused_ = false;
    drain_waiters_.wake_all();
    close_waiters_.wake_all();  // (wait_closed: the connection is gone)
    if (close_requested_) close_now();
  }

  // A read or a write failed: the connection is gone. The first such error is what wait_closed() raises,
  // as asyncio's connection_lost(exc) sets it on the future wait_closed() awaits.
  void lose(const std::exception_ptr& e) noexcept {
    if (!lost_) lost_exc_ = e;
    lost_ = true;
  }

  // Everything written has been sent: carry out a pending half-close or close.
  void flushed() {
    if (eof_requested_ && !eof_sent_ && fd_ >= 0) {
      eof_sent_ = true;
      if (socket_) ::shutdown(fd_, SHUT_WR);
    }
    if (close_requested_) close_now();
  }

  void write_eof() {
    eof_requested_ = true;
    if (buffered() == 0) flushed();
  }

  void close() {
    if (close_requested_) return;
    close_requested_ = true;
    if (buffered() == 0 || write_failed_) {
      close_now();
    } else if (read_op().pending && on_own_loop()) {
      be_->cancel(read_op());  // asyncio's close() stops reading at once; a read gets EOF once closed
    }
  }

  void close_now() noexcept {
    if (fd_ < 0) return;
    int fd = fd_;
    fd_ = -1;
    // Pending ops complete with -ECANCELED on the next poll. Through the link, never be_ directly: the stream
    // may outlive its loop (then there is nothing to forget, the loop completed every op), and its loop may
    // not be running (between two runs: the backend must forget fd all the same).
    close_fd(fd, link_.get());
    closed_ = true;
    // Lost before (a write found the reset): closing does not make that a clean end of the stream.
    if (lost_ && !rerr_) {
      rerr_ = lost_exc_;
      lost_before_eof_ = true;
    }
    eof_ = true;
    close_waiters_.wake_all();
    drain_waiters_.wake_all();
    if (reader_ && reader_->suspended()) reader_->wake();
  }

  void drop_user() {
    if (--users_ == 0) {
      // Nobody can read or write any more: close once the buffered data is flushed (at once if the loop
      // is gone: nothing will flush it).
      if (!on_own_loop()) {
        close_now();  // (its loop, if it still exists, completed every op when it stopped)
      } else if (read_op().pending) {
        be_->cancel(read_op());
      }
      close();
    }
  }

  // ---- data. Hot first: with 100s of connections a stream's lines are out of the L1 cache each time it is
  // used, so what one read or write touches is packed into as few of them as possible.
  // The header line: what a read or a write touches.
  std::uint32_t refs_ = 0;  // StreamRefs (readers, writers, pending operations, awaited reads)
  int fd_;
  IoBackend* be_;
  std::uint64_t loop_serial_;             // LoopCore::serial_ of the loop that made it
  StreamReader::Read* reader_ = nullptr;  // the one task waiting for data
  ReadBuffer rbuf_;
  bool socket_;
  bool eof_ = false;
  bool eof_requested_ = false;
  bool lost_ = false;             // a read or a write failed (reset, broken pipe...): the connection is gone
  bool lost_before_eof_ = false;  // eof_ came from an error, not from the peer's end of the stream
  bool close_requested_ = false;
  bool closed_ = false;
  bool paused_ = false;        // above the high-water mark; drain waits until the low one
  bool write_failed_ = false;  // werr_ is set
  // The next line: writes that wait, errors.
  std::size_t inflight_pos_ = 0;
  std::exception_ptr werr_;
  std::exception_ptr rerr_;
  std::exception_ptr lost_exc_;  // the error that lost the connection (lost_)
  std::size_t limit_ = StreamReader::kDefaultLimit;
  int users_ = 0;  // StreamReader/StreamWriter objects alive
  bool eof_sent_ = false;
  alignas(64) std::string inflight_;  // what the write op is sending
  std::string wbuf_;                  // queued behind the write in flight
  // cold
  std::string peer_;
  WaitList drain_waiters_;
  WaitList close_waiters_;
  std::shared_ptr<BackendLink> link_;  // the loop's backend, while it exists (for close_now)
};

void StreamReadOp::complete() {
  auto* s = static_cast<StreamState*>(this);
  StreamRef self(s, StreamRef::adopt);  // the reference start_read() took
  s->on_read(result, data);
}

void StreamWriteOp::complete() {
  auto* s = static_cast<StreamState*>(this);
  StreamRef self(s, StreamRef::adopt);  // the reference start_write() took
  s->on_write(result);
}

}  // namespace detail

// ---------------------------------------------------------------- StreamReader

StreamReader::StreamReader(detail::StreamRef s) noexcept : s_(std::move(s)) {
  if (s_) ++s_->users_;
}
StreamReader& StreamReader::operator=(StreamReader&& o) noexcept {
  if (this != &o) {
    if (s_) s_->drop_user();
    s_ = std::move(o.s_);
  }
  return *this;
}
StreamReader::~StreamReader() {
  if (s_) s_->drop_user();
}

namespace {
detail::StreamState& state_or_throw(const detail::StreamRef& s) {
  if (!s) throw InvalidStateError("stream object was moved from");
  return *s;
}
}  // namespace

// Nothing happens until the Read is awaited (as for a Task): a moved-from reader or an empty separator
// throws there.
StreamReader::Read StreamReader::read(std::size_t n) {
  return Read(s_, n == npos ? Read::Mode::all : Read::Mode::some, n, {});
}
StreamReader::Read StreamReader::readline() { return Read(s_, Read::Mode::line, 0, "\n"); }
StreamReader::Read StreamReader::readexactly(std::size_t n) { return Read(s_, Read::Mode::exactly, n, {}); }
StreamReader::Read StreamReader::readuntil(std::string_view sep) {
  return Read(s_, Read::Mode::until, 0, sep);
}

// ---------------------------------------------------------------- StreamReader::Read

namespace {
Task<std::string> await_read(StreamReader::Read r) { co_return co_await r; }
}  // namespace

StreamReader::Read::operator Task<std::string>() && { return await_read(std::move(*this)); }

StreamReader::Read::~Read() {
  if (s_ && s_->reader_ == this) s_->reader_ = nullptr;
}

bool StreamReader::Read::decided() noexcept {
  detail::StreamState& s = *s_;
  if (s.eof_) return true;
  switch (mode_) {
    case Mode::some:
      return n_ == 0 || s.available() > 0;
    case Mode::all:
      return false;
    case Mode::exactly:
      return s.available() >= n_;
    case Mode::until:
    case Mode::line:
      if (s.available() < sep_.size()) return false;  // (no search, and no overrun, as in asyncio)
      return find_sep() != std::string_view::npos || unfound_overrun() != 0;
  }
  return true;
}

std::size_t StreamReader::Read::find_sep() noexcept {
  // Once found, the separator stays where it is (this read is the stream's only reader, and positions
  // count from the unread data's start): finish() after decided() does not search again.
  if (found_) return searched_;
  std::string_view buf = s_->unread();
  // Resume where the last search stopped, less a separator's length (it may straddle the old end).
  std::size_t at =
      detail::find_separator(buf, sep_, searched_ >= sep_.size() ? searched_ - sep_.size() + 1 : 0);
  if (at == std::string_view::npos) {
    searched_ = buf.size();
  } else {
    searched_ = at;
    found_ = true;
  }
  return at;
}

// asyncio's test: with no separator in the buffer, the next search would start at available() + 1 - the
// separator's length (a separator may still straddle the end), and that start past the limit is an overrun;
// the start is LimitOverrunError's consumed(). 0 when there is no overrun (or fewer bytes than the
// separator).
std::size_t StreamReader::Read::unfound_overrun() const noexcept {
  const std::size_t avail = s_->available();
  if (avail < sep_.size()) return 0;
  const std::size_t next_start = avail + 1 - sep_.size();
  return next_start > s_->limit_ ? next_start : 0;
}

// The call that made this read, for messages (asyncio's name the method).
const char* StreamReader::Read::name() const noexcept {
  switch (mode_) {
    case Mode::some:
    case Mode::all:
      return "read";
    case Mode::exactly:
      return "readexactly";
    case Mode::until:
      return "readuntil";
    case Mode::line:
      return "readline";
  }
  return "read";
}

bool StreamReader::Read::await_ready() {
  if (!s_) throw InvalidStateError("stream read on a moved-from reader, or awaited twice");
  if (mode_ == Mode::until && sep_.empty()) throw Error("readuntil(): the separator is empty");
  detail::StreamState& s = *s_;
  s.check_loop();
  // Answer from the buffer, then from what the backend has at once (a system call on epoll, a queued
  // chunk on io_uring), before suspending. While another task waits for data, only a read that would wait
  // is refused, as asyncio's _wait_for_data: one the buffer answers takes its data.
  // A reader woken for data, then cancelled before it ran, reads nothing: it throws CancelledError when it
  // runs (asyncio's does the same). So it no longer holds the stream: a task that cancelled it to read
  // itself gets on with it. (Its task is pending on this loop, which is running here: it is alive.)
  if (s.reader_ && !s.reader_->suspended() && s.reader_->task_ && s.reader_->task_->cancel_pending())
    s.reader_ = nullptr;
  for (;;) {
    if (decided() || s.fd_ < 0) {
      // Except from under a reader woken for this data that has not run yet: it would find the buffer short
      // of what woke it and take that for the end of the stream. (asyncio's woken reader checks the buffer
      // again and goes back to waiting; this one cannot wait again once woken.)
      if (s.reader_ && !s.reader_->suspended() && !s.eof_)
        throw RuntimeError(std::string(name()) +
                           "() called while another task is woken for the data buffered");
      return true;
    }
    if (s.reader_)
      throw RuntimeError(std::string(name()) +
                         "() called while another task is already waiting for incoming data");
    if (s.read_op().pending || s.close_requested_) return false;  // (closing: wait for close_now's EOF)
    if (!s.be_->try_now(s.read_op())) return false;
    s.commit_read(s.read_op().result, s.read_op().data);
  }
}

void StreamReader::Read::park() {
  s_->reader_ = this;
  s_->start_read();  // (unless a read is already pending)
}

bool StreamReader::Read::cancel() {
  detail::StreamState& s = *s_;
  s.reader_ = nullptr;
  if (s.read_op().pending) s.be_->cancel(s.read_op());  // epoll: nothing was read; data is never lost
  return cancel_and_wake();
}

void StreamReader::Read::describe(std::string& out) const {
  out += "read from " + (s_->peer_.empty() ? std::string("stream") : s_->peer_);
}

std::string StreamReader::Read::await_resume() {
  detail::StreamState& s = *s_;
  if (s.reader_ == this) s.reader_ = nullptr;
  throw_if_cancelled();
  // Answered from the buffer while another task waits: what that one searched may be taken now.
  if (s.reader_) {
    s.reader_->searched_ = 0;
    s.reader_->found_ = false;
  }
  std::string out = finish();
  s_.reset();  // awaited once
  return out;
}

// The result of a decided read, or its error; the data stays buffered when it throws LimitOverrunError.
std::string StreamReader::Read::finish() {
  detail::StreamState& s = *s_;
  switch (mode_) {
    case Mode::some:
      if (s.available() == 0) s.throw_read_error();  // (read(0) too, as asyncio's)
      if (n_ == 0) return {};
      return s.take(n_);
    case Mode::all:
      // The connection failed before its end: what came is not the whole stream (asyncio's read(-1) raises
      // the error too), while read(n) and the others hand out what is buffered first.
      s.throw_read_error();
      return s.take(s.available());
    case Mode::exactly:
      if (n_ == 0 && s.available() == 0) s.throw_read_error();  // (as asyncio's readexactly(0))
      if (s.available() >= n_) return s.take(n_);
      s.throw_read_error();
      throw IncompleteReadError(s.take(s.available()), n_);
    case Mode::until:
    case Mode::line: {
      std::size_t at = find_sep();
      if (at != std::string_view::npos) {
        if (at > s.limit_)
          throw LimitOverrunError("readuntil(): separator found, but the chunk exceeds the limit", at);
        return s.take(at + sep_.size());
      }
      if (std::size_t consumed = unfound_overrun())
        throw LimitOverrunError("readuntil(): separator not found and the chunk exceeds the limit", consumed);
      s.throw_read_error();
      std::string partial = s.take(s.available());
      if (mode_ == Mode::line) return partial;
      throw IncompleteReadError(std::move(partial), IncompleteReadError::kUndefined);  // (asyncio: None)
    }
  }
  return {};
}

// At the end of the stream: a lost connection is not one (asyncio's connection_lost(exc) sets the exception,
// not EOF), so a loop on !at_eof() reads on and gets the error.
bool StreamReader::at_eof() const noexcept {
  return !s_ || (s_->eof_ && !s_->lost_before_eof_ && s_->available() == 0);
}
std::size_t StreamReader::limit() const noexcept { return s_ ? s_->limit_ : kDefaultLimit; }
void StreamReader::set_limit(std::size_t limit) {
  if (limit == 0) throw std::invalid_argument("StreamReader::set_limit(): the limit must be > 0");
  if (s_) s_->limit_ = limit;
}

// ---------------------------------------------------------------- StreamWriter

StreamWriter::StreamWriter(detail::StreamRef s) noexcept : s_(std::move(s)) {
  if (s_) ++s_->users_;
}
StreamWriter& StreamWriter::operator=(StreamWriter&& o) noexcept {
  if (this != &o) {
    if (s_) s_->drop_user();
    s_ = std::move(o.s_);
  }
  return *this;
}
StreamWriter::~StreamWriter() {
  if (s_) s_->drop_user();
}

void StreamWriter::write(std::string_view data) { state_or_throw(s_).write(data); }

namespace {
Task<> drain_slow(detail::StreamRef keep) {
  detail::StreamState& s = *keep;
  // Lost: the error that lost the connection, whichever found it first and whatever was written since (as
  // asyncio's drain raises the reader's exception, which connection_lost(exc) set).
  if (s.lost_) std::rethrow_exception(s.lost_exc_);
  if (s.close_requested_) throw ConnectionResetError(ECONNRESET, "drain() after close(): connection lost");
  while (s.paused_ && !s.lost_ && s.fd_ >= 0) {
    detail::WaitList::Node node(s.drain_waiters_, "drain");
    co_await node;
  }
  if (s.lost_) std::rethrow_exception(s.lost_exc_);
  if (s.closed_ && s.buffered() > 0) throw ConnectionResetError(ECONNRESET, "drain(): connection lost");
}
}  // namespace

StreamWriter::Drain StreamWriter::drain() {
  state_or_throw(s_);
  return Drain(s_);
}

bool StreamWriter::Drain::await_ready() {
  const detail::StreamState& s = *s_;
  if (!s.lost_ && !s.paused_ && !s.close_requested_ && !(s.closed_ && s.buffered() > 0))
    return true;  // nothing to wait for
  slow_ = drain_slow(s_);
  awaiter_ = slow_.operator co_await();
  return awaiter_.await_ready();
}

void StreamWriter::write_eof() { state_or_throw(s_).write_eof(); }
void StreamWriter::close() { state_or_throw(s_).close(); }
// As asyncio's transport, also once the connection is lost (a read or a write failed).
bool StreamWriter::is_closing() const noexcept {
  return !s_ || s_->close_requested_ || s_->closed_ || s_->lost_;
}

namespace {
// Takes the stream by value: a task made from wait_closed() first runs later, possibly after the writer is
// gone (close, then wait in the background), as Drain keeps its own reference.
Task<> wait_stream_closed(detail::StreamRef keep, bool raise) {
  detail::StreamState& s = state_or_throw(keep);
  // Closed, or lost (a read or a write failed: asyncio's transport closes itself then); the descriptor of
  // a lost connection is closed once the reader and the writer are gone.
  while (!s.closed_ && !s.lost_) {
    detail::WaitList::Node node(s.close_waiters_, "wait_closed");
    co_await node;
  }
  // Lost, even if closed since: the error that lost it, every time (asyncio: the close waiter's exception).
  if (raise && s.lost_exc_) std::rethrow_exception(s.lost_exc_);
}
}  // namespace

Task<> StreamWriter::wait_closed() { return wait_stream_closed(s_, true); }

Task<> detail::stream_closed(StreamRef s) { return wait_stream_closed(std::move(s), false); }

std::string StreamWriter::peername() const { return s_ ? s_->peer_ : std::string(); }
std::string StreamWriter::sockname() const {
  return s_ && s_->socket_ && s_->fd_ >= 0 ? detail::sock_name(s_->fd_) : std::string();
}
std::size_t StreamWriter::buffered() const noexcept { return s_ ? s_->buffered() : 0; }

namespace detail {

StreamRef make_stream_state(int fd, bool is_socket, std::string peer) {
  return StreamRef(new StreamState(fd, is_socket, std::move(peer)));
}

void add_stream_ref(StreamState* s) noexcept { ++s->refs_; }
bool drop_stream_ref(StreamState* s) noexcept { return --s->refs_ == 0; }
void destroy_stream_state(StreamState* s) noexcept { delete s; }

std::pair<StreamReader, StreamWriter> make_stream(int fd, bool is_socket, std::string peer) {
  auto s = make_stream_state(fd, is_socket, std::move(peer));
  return {StreamReader(s), StreamWriter(s)};
}

}  // namespace detail
}  // namespace corio
