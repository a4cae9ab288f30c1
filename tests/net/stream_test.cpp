// StreamReader / StreamWriter over real loopback TCP and Unix sockets: the reading calls, EOF and limits,
// one reader at a time, cancellation losing nothing, flow control (write never blocks, drain waits above
// the high-water mark and throws once the peer is gone), resets, half-close, peername, Unix streams.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "corio/core/async_generator.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/gather.hpp"
#include "corio/net/detail/find_separator.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/server.hpp"
#include "corio/net/stream.hpp"
#include "corio/sync/event.hpp"
#include "corio/sync/thread.hpp"
#include "net_test_util.hpp"

using namespace std::chrono_literals;
using corio::StreamReader;
using corio::StreamWriter;
using corio::Task;
using corio_test::connect_to_raw_peer;
using corio_test::raw_send;
using corio_test::run_guarded;

namespace {

// Deterministic, position-dependent bytes: a reordering or a lost chunk changes the content.
std::string pattern(std::size_t n, std::size_t offset = 0) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (offset + i) * 7 % 26);
  return s;
}

// The process must survive writes to dead peers without SIGPIPE: make sure SIGPIPE is not ignored, so a
// send without MSG_NOSIGNAL would kill the test binary.
class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override { old_ = ::signal(SIGPIPE, SIG_DFL); }
  void TearDown() override { ::signal(SIGPIPE, old_); }
  sighandler_t old_ = SIG_DFL;
};

TEST_F(StreamTest, RoundTripsWithEveryReadCall) {
  run_guarded([]() -> Task<> {
    corio::Server server = co_await corio::start_server(
        [](StreamReader r, StreamWriter w) -> Task<> {
          // Echo every chunk as it comes.
          for (;;) {
            std::string chunk = co_await r.read(4096);
            if (chunk.empty()) break;
            w.write(chunk);
            co_await w.drain();
          }
          w.close();
        },
        "127.0.0.1", 0);
    auto [reader, writer] = co_await corio::open_connection("127.0.0.1", server.port());

    writer.write("hello\n");
    EXPECT_EQ(co_await reader.readline(), "hello\n");

    writer.write("abc");
    writer.write("def");
    EXPECT_EQ(co_await reader.readexactly(6), "abcdef");

    writer.write("one\r\ntwo\r\n");
    EXPECT_EQ(co_await reader.readuntil("\r\n"), "one\r\n");
    EXPECT_EQ(co_await reader.readuntil("\r\n"), "two\r\n");

    // A multi-byte separator split across writes (and likely across reads).
    writer.write("head-->");
    co_await corio_test::turns(3);
    writer.write("|<--tail");
    EXPECT_EQ(co_await reader.readuntil("-->|<--"), "head-->|<--");
    EXPECT_EQ(co_await reader.readexactly(4), "tail");

    // read(n) returns at most n bytes, at least one.
    writer.write("0123456789");
    std::string got;
    while (got.size() < 10) {
      std::string part = co_await reader.read(3);
      EXPECT_GE(part.size(), 1u);
      EXPECT_LE(part.size(), 3u);
      got += part;
    }
    EXPECT_EQ(got, "0123456789");

    // A large payload both ways, intact.
    // (Read while draining: the echo comes back while we are still sending.)
    std::string big = pattern(1 << 20);
    auto echoed = corio::create_task(reader.readexactly(big.size()));
    writer.write(big);
    co_await writer.drain();
    EXPECT_TRUE(co_await echoed == big);

    // read() with no size: everything until EOF.
    writer.write("last words");
    writer.write_eof();
    EXPECT_EQ(co_await reader.read(), "last words");
    EXPECT_TRUE(reader.at_eof());
    EXPECT_EQ(co_await reader.read(10), "");
    EXPECT_EQ(co_await reader.readline(), "");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

// A long stream cut into writes of varying sizes and read back with a mix of every read call and size:
// each byte arrives once and in order while the read buffer grows, fills, and moves its unread data.
TEST_F(StreamTest, MixedReadsOfALongStreamReturnEveryByteInOrder) {
  std::string text = pattern(300'000);
  for (std::size_t i = 97; i < text.size(); i += 97 + i % 89) text[i] = '\n';
  run_guarded([&]() -> Task<> {
    corio::Server server = co_await corio::start_server(
        [&](StreamReader, StreamWriter w) -> Task<> {
          std::size_t at = 0;
          for (std::size_t k = 0; at < text.size(); ++k) {
            std::size_t n = std::min<std::size_t>(1 + k * 7919 % 9000, text.size() - at);
            w.write(std::string_view(text).substr(at, n));
            at += n;
            if (k % 3 == 0) co_await w.drain();
          }
          co_await w.drain();
          w.close();
        },
        "127.0.0.1", 0);
    auto [reader, writer] = co_await corio::open_connection("127.0.0.1", server.port());
    std::string got;
    for (std::size_t k = 0; !reader.at_eof(); ++k) {
      std::size_t n = 1 + k * 104729 % 5000;
      std::string part;
      switch (k % 3) {
        case 0:
          part = co_await reader.read(n);
          break;
        case 1:
          part = co_await reader.readline();
          break;
        default:
          try {
            part = co_await reader.readexactly(n);
          } catch (const corio::IncompleteReadError& e) {
            part = e.partial();
          }
          break;
      }
      got += part;
    }
    EXPECT_EQ(got.size(), text.size());
    EXPECT_TRUE(got == text);
    server.close();
    co_await server.wait_closed();
  }());
}

// The search itself, against std::string_view::find: every buffer length up to 80, every start, separators
// of 1 to 19 bytes, over an alphabet of the separators' own bytes so that near-misses are everywhere.
TEST(FindSeparator, AgreesWithStringViewFindOnEveryLengthAndStart) {
  const std::string_view seps[] = {"\n", "\r\n", "\r\n\r\n", "-->|<", "aab", "aaaaaaaaaaaaaaaaaab"};
  std::uint64_t x = 88172645463325252u;  // xorshift: the same buffers every run
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  std::size_t checked = 0;
  for (std::string_view sep : seps) {
    std::string alphabet(sep);
    alphabet += 'x';
    for (std::size_t len = 0; len <= 80; ++len) {
      for (int round = 0; round < 20; ++round) {
        std::string buf(len, ' ');
        for (char& c : buf) c = alphabet[next() % alphabet.size()];
        for (std::size_t from = 0; from <= len; ++from) {
          std::size_t want = std::string_view(buf).find(sep, from);
          ASSERT_EQ(corio::detail::find_separator(buf, sep, from), want)
              << "sep size " << sep.size() << ", buffer \"" << buf << "\", from " << from;
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 100'000u);
}

// readuntil against std::string::find on text full of near-misses of the separator ("\r\n\r", "\n\r\n",
// "\r\r\n\n"): once arriving in chunks of varying sizes (the search resumes as data trickles in), once
// all buffered before the first read (each search starts at a different offset of the same buffer), so
// the separator ends at every offset of the search's 16-byte blocks, straddles them, and ends buffers.
TEST_F(StreamTest, ReaduntilFindsTheFirstSeparatorAmongNearMisses) {
  const std::string sep = "\r\n\r\n";
  const char* pieces[] = {"ab", "\r", "\n", "\r\n\r", "\n\r\n", "\r\r\n\n", "xyz0123456789", "\r\n\r\n"};
  std::string text;
  for (std::size_t i = 0; text.size() < 20'000; ++i) text += pieces[(i * 7 + i / 3) % 8];
  text += sep;
  std::vector<std::string> expected;
  for (std::size_t at = 0, next; (next = text.find(sep, at)) != std::string::npos; at = next + sep.size())
    expected.push_back(text.substr(at, next + sep.size() - at));
  ASSERT_GT(expected.size(), 100u);
  for (bool bulk : {false, true}) {
    run_guarded([&]() -> Task<> {
      corio::Event sent;
      corio::Server server = co_await corio::start_server(
          [&](StreamReader, StreamWriter w) -> Task<> {
            std::size_t at = 0;
            for (std::size_t k = 0; at < text.size(); ++k) {
              std::size_t n = bulk ? text.size() : std::min<std::size_t>(1 + k * 37 % 61, text.size() - at);
              w.write(std::string_view(text).substr(at, n));
              at += n;
              if (k % 4 == 0) co_await w.drain();
            }
            co_await w.drain();
            sent.set();
            w.close();
          },
          "127.0.0.1", 0);
      auto [reader, writer] = co_await corio::open_connection("127.0.0.1", server.port());
      if (bulk) co_await sent.wait();
      std::size_t mismatches = 0;
      for (const std::string& want : expected) mismatches += co_await reader.readuntil(sep) != want;
      EXPECT_EQ(mismatches, 0u) << (bulk ? "all buffered" : "in chunks");
      EXPECT_EQ(co_await reader.read(), "");
      server.close();
      co_await server.wait_closed();
    }());
  }
}

TEST_F(StreamTest, ReadlineReturnsPartialLineAtEof) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    raw_send(c.peer.get(), "first\nsecond\npartial");
    ::shutdown(c.peer.get(), SHUT_WR);
    EXPECT_EQ(co_await c.reader.readline(), "first\n");
    EXPECT_EQ(co_await c.reader.readline(), "second\n");
    EXPECT_EQ(co_await c.reader.readline(), "partial");
    EXPECT_TRUE(c.reader.at_eof());
    EXPECT_EQ(co_await c.reader.readline(), "");
    EXPECT_EQ(co_await c.reader.readline(), "");
  }());
}

TEST_F(StreamTest, ReadexactlyAtEofThrowsIncompleteReadErrorWithPartial) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    raw_send(c.peer.get(), "0123456789abc");
    c.peer.reset();  // FIN after the data
    EXPECT_EQ(co_await c.reader.readexactly(10), "0123456789");
    CO_EXPECT_THROW_AS(co_await c.reader.readexactly(10), corio::IncompleteReadError, e, {
      EXPECT_EQ(e.partial(), "abc");
      EXPECT_EQ(e.expected(), 10u);
    });
    // partial() was consumed: nothing is left.
    EXPECT_TRUE(c.reader.at_eof());
    CO_EXPECT_THROW_AS(co_await c.reader.readexactly(1), corio::IncompleteReadError, e,
                       { EXPECT_EQ(e.partial(), ""); });
    EXPECT_EQ(co_await c.reader.readexactly(0), "");
  }());
}

TEST_F(StreamTest, ReaduntilAtEofThrowsIncompleteReadError) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    raw_send(c.peer.get(), "a;b");
    ::shutdown(c.peer.get(), SHUT_WR);
    EXPECT_EQ(co_await c.reader.readuntil(";"), "a;");
    // expected() is undefined (asyncio's None): readuntil had no size to expect.
    CO_EXPECT_THROW_AS(co_await c.reader.readuntil(";"), corio::IncompleteReadError, e, {
      EXPECT_EQ(e.partial(), "b");
      EXPECT_EQ(e.expected(), corio::IncompleteReadError::kUndefined);
      EXPECT_NE(std::string(e.what()).find("undefined expected bytes"), std::string::npos) << e.what();
    });
  }());
}

TEST_F(StreamTest, LineLongerThanTheLimitThrowsAndKeepsTheData) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    EXPECT_EQ(c.reader.limit(), StreamReader::kDefaultLimit);
    EXPECT_THROW(c.reader.set_limit(0), std::invalid_argument);  // (asyncio: ValueError)
    EXPECT_EQ(c.reader.limit(), StreamReader::kDefaultLimit);
    c.reader.set_limit(1000);
    std::string long_line = pattern(3000) + "\n";
    raw_send(c.peer.get(), long_line + "short\n");
    bool threw = false;
    try {
      (void)co_await c.reader.readline();
    } catch (const corio::LimitOverrunError&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    // Nothing was consumed: the long line is still there, in order, followed by the next line.
    EXPECT_EQ(co_await c.reader.readexactly(long_line.size()), long_line);
    EXPECT_EQ(co_await c.reader.readline(), "short\n");
  }());
}

// asyncio's limit for a separator of several bytes: a separator starting at the limit is still found
// (however the bytes arrive), and "not found" is an overrun only once the separator could no longer start
// within the limit (limit + its length - 1 bytes buffered); consumed() is where the next search would start.
TEST_F(StreamTest, LimitCountsWhereAMultiByteSeparatorStarts) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    c.reader.set_limit(10);
    raw_send(c.peer.get(), "0123456789\r\n");  // whole: the separator starts at the limit
    EXPECT_EQ(co_await c.reader.readuntil("\r\n"), "0123456789\r\n");
    raw_send(c.peer.get(), "0123456789\r");  // split after the "\r": 11 bytes may still end in "\r\n"
    auto split = corio::create_task(c.reader.readuntil("\r\n"));
    co_await corio_test::turns(20);
    EXPECT_FALSE(split.done());  // no overrun: waiting for more
    raw_send(c.peer.get(), "\n");
    EXPECT_EQ(co_await split, "0123456789\r\n");
    raw_send(c.peer.get(), "0123456789AB");  // 12 bytes, no separator: it can no longer start by 10
    CO_EXPECT_THROW_AS(co_await c.reader.readuntil("\r\n"), corio::LimitOverrunError, e,
                       { EXPECT_EQ(e.consumed(), 11u); });
    EXPECT_EQ(co_await c.reader.readexactly(12), "0123456789AB");  // kept
  }());
}

TEST_F(StreamTest, DefaultLimitIs64KiBAndOverrunKeepsData) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    std::string huge = pattern(200 * 1024);  // no newline at all, more than the 64 KiB default
    auto sender = corio::create_task(corio::to_thread([fd = c.peer.get(), &huge] { raw_send(fd, huge); }));
    bool threw = false;
    try {
      (void)co_await c.reader.readuntil("\n");
    } catch (const corio::LimitOverrunError&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    co_await sender;
    EXPECT_EQ(co_await c.reader.readexactly(huge.size()), huge);
  }());
}

Task<std::string> readline_of(StreamReader& r) { co_return co_await r.readline(); }

// A task awaiting r.readline(), once it is parked waiting for data.
Task<corio::TaskHandle<std::string>> parked_readline(StreamReader& r) {
  auto t = corio::create_task(readline_of(r));
  CO_ASSERT(co_await corio_test::until([&] { return t.awaiting().find("read from") != std::string::npos; }));
  co_return t;
}

TEST_F(StreamTest, SecondConcurrentReaderThrowsRuntimeError) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    StreamReader& reader = c.reader;
    auto first = co_await parked_readline(reader);
    bool threw = false;
    try {
      (void)co_await reader.read(10);
    } catch (const corio::RuntimeError&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    threw = false;
    try {
      (void)co_await reader.readexactly(3);
    } catch (const corio::RuntimeError&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    // The message names the call, as asyncio's ("readline() called while another coroutine is already
    // waiting for incoming data").
    CO_EXPECT_THROW_AS(co_await reader.readuntil(";"), corio::RuntimeError, e,
                       EXPECT_EQ(std::string(e.what()).rfind("readuntil() called while another task", 0), 0u)
                           << e.what());
    // The first reader is undisturbed.
    EXPECT_FALSE(first.done());
    raw_send(c.peer.get(), "line\n");
    EXPECT_EQ(co_await first, "line\n");
  }());
}

// While a task waits for data, another task's read that the buffer answers takes its data, as asyncio
// refuses only a read that would wait (_wait_for_data); the waiting task then finds its separator in what is
// left, though it had already searched bytes that were taken.
TEST_F(StreamTest, SecondReaderIsAnsweredFromTheBufferWhileAnotherWaits) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    StreamReader& reader = c.reader;
    auto first = co_await parked_readline(reader);
    raw_send(c.peer.get(), "abc");
    // "abc" reaches the buffer within a few loop turns (the first reader's read takes it in); until then
    // the read would wait, and is refused.
    std::string got;
    for (int turn = 0; turn < 10'000 && got.empty(); ++turn) {
      bool refused = false;
      try {
        got = co_await reader.read(2);
      } catch (const corio::RuntimeError&) {
        refused = true;
      }
      if (refused) co_await corio::sleep(0s);
    }
    EXPECT_EQ(got, "ab");
    CO_EXPECT_THROW_AS(co_await reader.readexactly(10), corio::RuntimeError, e, (void)e);  // (would wait)
    EXPECT_FALSE(first.done());
    raw_send(c.peer.get(), "\nrest");
    EXPECT_EQ(co_await corio::wait_for(first, 10s), "c\n");
    EXPECT_EQ(co_await reader.readexactly(4), "rest");
  }());
}

// A reader woken for its data keeps it until it runs: another task's read in between, which the buffer
// would answer, is refused (it took the line, and the woken reader, finding the buffer short of what woke
// it, returned "" as if at EOF). asyncio's woken reader would check again and wait on; this one cannot.
namespace {
Task<std::string> read_when_buffered(StreamReader* r, std::size_t n) {
  for (int turn = 0; turn < 10'000; ++turn) {
    bool refused = false;
    try {
      co_return co_await r->readexactly(n);
    } catch (const corio::RuntimeError&) {
      refused = true;  // would wait while another task waits, or the data is another's
    }
    if (refused) co_await corio::sleep(0s);
  }
  co_return "";
}
}  // namespace

TEST_F(StreamTest, AReaderWokenForItsDataKeepsItAgainstAnotherTasksRead) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    auto first = co_await parked_readline(c.reader);
    auto other = corio::create_task(read_when_buffered(&c.reader, 4));
    co_await corio_test::turns(3);
    raw_send(c.peer.get(), "one\n");
    EXPECT_EQ(co_await corio::wait_for(first, 10s), "one\n");  // "" would say EOF: the peer sent none
    EXPECT_FALSE(c.reader.at_eof());
    raw_send(c.peer.get(), "two\n");
    EXPECT_EQ(co_await corio::wait_for(other, 10s), "two\n");
  }());
}

// A reader woken for its data and then cancelled before it ran reads nothing (it throws CancelledError when
// it runs), so it no longer holds the stream: the task that cancelled it to read itself (the "stop, cancel
// the reading task, read here" pattern) gets the data, as in asyncio. It got RuntimeError ("another task is
// woken for the data buffered").
TEST_F(StreamTest, AWokenReaderCancelledBeforeItRanLeavesTheDataToTheNextRead) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    auto first = co_await parked_readline(c.reader);
    raw_send(c.peer.get(), "line1\nline2\n");
    CO_ASSERT(co_await corio_test::until([&] { return first.awaiting() == "ready"; }));  // woken, not run
    first.cancel();
    EXPECT_EQ(co_await c.reader.readline(), "line1\n");
    EXPECT_THROW(co_await first, corio::CancelledError);
    EXPECT_EQ(co_await c.reader.readline(), "line2\n");
    // Again with a read the buffer cannot answer: it waits in the cancelled reader's place.
    auto second = co_await parked_readline(c.reader);
    raw_send(c.peer.get(), "ab\n");
    CO_ASSERT(co_await corio_test::until([&] { return second.awaiting() == "ready"; }));
    second.cancel();
    auto mine = corio::create_task(c.reader.readexactly(5));
    co_await corio_test::turns(2);
    EXPECT_FALSE(mine.done());
    raw_send(c.peer.get(), "cd");
    EXPECT_EQ(co_await corio::wait_for(mine, 10s), "ab\ncd");
    EXPECT_THROW(co_await second, corio::CancelledError);
  }());
}

// read() to EOF on a connection reset part-way: the error, as asyncio's read(-1), not the part that came
// as if it were the whole stream.
TEST_F(StreamTest, ReadToEofOnAConnectionResetPartWayRaises) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    auto all = corio::create_task(c.reader.read());
    CO_ASSERT(
        co_await corio_test::until([&] { return all.awaiting().find("read from") != std::string::npos; }));
    raw_send(c.peer.get(), "partial body");
    co_await corio_test::turns(5);
    EXPECT_FALSE(all.done());
    c.peer.reset_connection();  // RST: the body is cut short
    bool reset = false;
    std::string got;
    try {
      got = co_await corio::wait_for(all, 10s);
    } catch (const corio::ConnectionResetError&) {
      reset = true;
    }
    EXPECT_TRUE(reset) << "read() returned \"" << got << "\" as if at a clean EOF";
  }());
}

// A reset is not the end of the stream: at_eof() stays false (asyncio's connection_lost(exc) sets the
// exception, not EOF), so a loop on !at_eof() reads on and gets the error.
TEST_F(StreamTest, AtEofIsFalseAfterAReset) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    c.peer.reset_connection();
    CO_EXPECT_THROW_AS(co_await c.reader.read(10), corio::ConnectionResetError, e, (void)e);
    EXPECT_FALSE(c.reader.at_eof());
    CO_EXPECT_THROW_AS(co_await c.reader.readline(), corio::ConnectionResetError, e, (void)e);
  }());
}

// A read suspends its caller until the buffer decides it, however the data trickles in: the caller is
// not woken for each partial arrival (it would see a short result), and the parked task says what it waits
// on.
TEST_F(StreamTest, ReadWaitsUntilItsDataIsWholeWhenItTricklesIn) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    auto exactly = corio::create_task(c.reader.readexactly(6));
    CO_ASSERT(co_await corio_test::until(
        [&] { return exactly.awaiting().find("read from") != std::string::npos; }));
    for (char ch : std::string("abcdef")) {
      EXPECT_FALSE(exactly.done());
      raw_send(c.peer.get(), std::string_view(&ch, 1));
      co_await corio_test::until([&] { return exactly.done(); }, 50);
    }
    CO_ASSERT(exactly.done());
    EXPECT_EQ(co_await exactly, "abcdef");

    auto until = corio::create_task(c.reader.readuntil("\r\n"));
    for (std::string_view piece : {"one", "\r", "two", "\r", "\n"}) {
      co_await corio_test::turns(3);
      EXPECT_FALSE(until.done());
      raw_send(c.peer.get(), piece);
    }
    EXPECT_EQ(co_await until, "one\rtwo\r\n");

    // A longer separator whose prefixes arrive (and fail to complete it) before it does.
    auto head = corio::create_task(c.reader.readuntil("\r\n\r\n"));
    for (std::string_view piece : {"a\r\n", "\r", "b\r\n\r", "\n"}) {
      co_await corio_test::turns(3);
      EXPECT_FALSE(head.done());
      raw_send(c.peer.get(), piece);
    }
    EXPECT_EQ(co_await head, "a\r\n\rb\r\n\r\n");
  }());
}

// Like a Task, a read does nothing until it is awaited: errors show at the co_await, and awaiting the same
// read twice throws InvalidStateError.
TEST_F(StreamTest, ReadIsLazyAndAwaitedOnce) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    StreamReader moved = std::move(c.reader);
    auto from_moved = c.reader.readline();  // nothing happens yet
    CO_EXPECT_THROW_AS(co_await from_moved, corio::InvalidStateError, e, {});

    auto empty_sep = moved.readuntil("");
    CO_EXPECT_THROW_AS(co_await empty_sep, corio::Error, e, {});

    raw_send(c.peer.get(), "xy");
    auto two = moved.readexactly(2);
    EXPECT_EQ(co_await two, "xy");
    CO_EXPECT_THROW_AS(co_await two, corio::InvalidStateError, e, {});

    // DESIGN.md's signature still works where a Task is wanted.
    Task<std::string> as_task = moved.readline();
    raw_send(c.peer.get(), "task\n");
    EXPECT_EQ(co_await std::move(as_task), "task\n");
  }());
}

TEST_F(StreamTest, ReadTimedOutByWaitForLosesNothing) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    raw_send(c.peer.get(), "01234");  // half of what the read wants: buffered when it is cancelled
    bool timed_out = false;
    try {
      (void)co_await corio::wait_for(c.reader.readexactly(10), 50ms);
    } catch (const corio::TimeoutError&) {
      timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    raw_send(c.peer.get(), "56789");
    EXPECT_EQ(co_await c.reader.readexactly(10), "0123456789");

    // The same with nothing buffered, then a readline.
    timed_out = false;
    try {
      (void)co_await corio::wait_for(c.reader.readline(), 20ms);
    } catch (const corio::TimeoutError&) {
      timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    raw_send(c.peer.get(), "after\n");
    EXPECT_EQ(co_await c.reader.readline(), "after\n");
  }());
}

TEST_F(StreamTest, CancelledReadWithDataAlreadyInTheKernelLosesNothing) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    for (int round = 0; round < 50; ++round) {
      std::string msg = "round " + std::to_string(round) + "\n";
      auto t = corio::create_task(c.reader.readline());
      CO_ASSERT(
          co_await corio_test::until([&] { return t.awaiting().find("read from") != std::string::npos; }));
      // The data reaches the socket while the read is pending; the cancellation arrives before the loop
      // polls again. Either the read already took it (into the buffer) or it is still in the kernel.
      raw_send(c.peer.get(), msg);
      t.cancel();
      EXPECT_TRUE(co_await corio_test::ends_cancelled(t));
      EXPECT_EQ(co_await c.reader.readline(), msg);
    }
  }());
}

// Here the cancellation comes one step later: the loop's poll has already read the data for the pending
// read and woken its task, which has not run yet. The data stays the stream's, ahead of anything that
// came after it.
TEST_F(StreamTest, ReadCancelledAfterItsDataArrivedLosesNothing) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    for (int round = 0; round < 40; ++round) {
      std::string msg = "round " + std::to_string(round) + "\n";
      auto t = round % 2 == 0 ? corio::create_task(c.reader.readexactly(msg.size()))
                              : corio::create_task(c.reader.readline());
      CO_ASSERT(
          co_await corio_test::until([&] { return t.awaiting().find("read from") != std::string::npos; }));
      raw_send(c.peer.get(), msg);
      // Queued now, so it runs in the next turn, after that turn's poll has read msg for the read and before
      // the read's task runs (it was queued by the poll, behind this).
      corio::get_running_loop().call_soon([&t, &c, round] {
        t.cancel();
        if (round % 4 == 1) raw_send(c.peer.get(), "later\n");  // more data behind it
      });
      EXPECT_TRUE(co_await corio_test::ends_cancelled(t));
      EXPECT_EQ(co_await c.reader.readexactly(msg.size()), msg);
      if (round % 4 == 1) {
        EXPECT_EQ(co_await c.reader.readline(), "later\n");
      }
    }
  }());
}

// A read whose receive is still waiting to be submitted (io_uring prepares a multishot receive when the
// reader first waits, and submits it when the loop polls) when the stream is closed in the same turn, and
// the descriptor's number taken at once by another socket: the new socket's data stays where it is.
TEST_F(StreamTest, ReadPendingWhenTheStreamClosesNeverTakesTheNumbersNextOwnersData) {
  run_guarded([]() -> Task<> {
    int pair[2];
    CO_ASSERT(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) == 0);
    const int number = pair[0];
    corio_test::Fd peer(pair[1]);
    auto [reader, writer] = corio::detail::make_stream(number, true, "pair");
    auto read = corio::create_task(reader.read(100));
    // Runs right after the reader's first step, in the same turn: before the loop polls.
    auto close_and_reuse = [](StreamWriter& w, int num) -> Task<> {
      w.close();  // nothing buffered: the descriptor is closed now
      int other[2];
      CO_ASSERT(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, other) == 0);
      if (other[0] != num) {                      // (the lowest free number usually is the one just closed)
        CO_ASSERT(::dup2(other[0], num) == num);  // the closed stream's number, now another socket's
        ::close(other[0]);
      }
      CO_ASSERT(::send(other[1], "SECRET", 6, 0) == 6);
      ::close(other[1]);
      co_return;
    };
    auto closer = corio::create_task(close_and_reuse(writer, number));
    co_await closer;
    EXPECT_EQ(co_await read, "");  // the stream was closed: EOF
    co_await corio_test::turns(5);
    char buf[16] = {};
    EXPECT_EQ(::recv(number, buf, sizeof buf, MSG_DONTWAIT), 6) << "the closed stream's receive took it";
    EXPECT_STREQ(buf, "SECRET");
    ::close(number);
  }());
}

// wait_closed() made into a task that first runs after the writer (and the whole connection object) is
// gone: the usual "close, then wait in the background". (It read the writer when it first ran: a
// use-after-free the sanitizer build reports.)
TEST_F(StreamTest, WaitClosedTaskOutlivesTheWriter) {
  run_guarded([]() -> Task<> {
    corio::TaskHandle<void> waiting;
    {
      auto c = std::make_unique<corio_test::RawPeerConnection>(co_await connect_to_raw_peer());
      c->writer.close();
      waiting = corio::create_task(c->writer.wait_closed());
    }  // the reader, the writer and the peer are destroyed before the task's first step
    co_await waiting;
    EXPECT_TRUE(waiting.done());
  }());
}

// A stream dropped while its loop exists but does not run (between two run_until_complete calls, as
// asyncio allows): its descriptor is forgotten by that loop's backend all the same, so the next socket
// given the same number (the next connection's, here) starts clean: it connects, and reads what arrives.
TEST_F(StreamTest, StreamDroppedBetweenRunsLeavesNothingBehindForItsNumber) {
  corio::EventLoop loop;
  corio_test::RawPeerConnection c = loop.run_until_complete([]() -> Task<corio_test::RawPeerConnection> {
    auto c = co_await connect_to_raw_peer();
    auto read = corio::create_task(c.reader.read(1));
    co_await corio_test::turns(3);  // the read waits: the backend watches the descriptor
    raw_send(c.peer.get(), "x");
    EXPECT_EQ(co_await read, "x");
    c.writer.write(std::string(1 << 16, 'o'));
    co_return c;
  }());
  c.reader = StreamReader();  // outside any run: the stream closes now
  c.writer = StreamWriter();
  // c.peer stays open, so the number the stream had is the lowest free one: the next socket gets it.
  loop.run_until_complete(corio::wait_for(
      [](corio_test::RawListener& listener) -> Task<> {
        auto [reader, writer] = co_await corio::open_connection("127.0.0.1", listener.port());
        corio_test::Fd peer = listener.accept();
        raw_send(peer.get(), "ping\n");
        EXPECT_EQ(co_await reader.readline(), "ping\n");
        writer.write("pong\n");
        co_await writer.drain();
        std::string got;  // what the peer receives (the write goes out in the background: yield to it)
        CO_ASSERT(co_await corio_test::until([&] {
          char buf[64];
          ssize_t n = ::recv(peer.get(), buf, sizeof buf, MSG_DONTWAIT);
          if (n > 0) got.append(buf, static_cast<std::size_t>(n));
          return got.size() >= 5;
        }));
        EXPECT_EQ(got, "pong\n");  // not the dropped stream's bytes
      }(c.listener),
      10s));
}

// TCP urgent data: a read stops at the urgent mark, so there a short read does not mean that nothing is left
// (the epoll backend skips a read it knows would find nothing; it must not skip the data behind the mark).
TEST_F(StreamTest, UrgentDataDoesNotHideTheDataBehindIt) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    auto first = corio::create_task(c.reader.readline());
    co_await corio_test::turns(3);  // it waits: the descriptor is watched
    raw_send(c.peer.get(), "first\n");
    EXPECT_EQ(co_await first, "first\n");  // a short read: nothing left, as far as the backend knows
    raw_send(c.peer.get(), "abc");
    CO_ASSERT(::send(c.peer.get(), "X", 1, MSG_OOB) == 1);
    raw_send(c.peer.get(), "def\n");
    co_await corio_test::turns(2);  // the loop sees the arrival's edge with nobody reading: the next read is
                                    // made at once, and stops at the mark
    EXPECT_EQ(co_await c.reader.readline(), "abcdef\n");  // (the urgent byte is not in the stream)
  }());
}

TEST_F(StreamTest, WriteNeverBlocksAndDrainWaitsForASlowReader) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    // Small kernel buffers so that a few hundred KiB fill the pipe.
    int small = 16 * 1024;
    ::setsockopt(c.peer.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);

    // One big write returns at once, whatever the peer does.
    std::string big = pattern(4 << 20);
    c.writer.write(big);
    EXPECT_GT(c.writer.buffered(), StreamWriter::kHighWater);

    auto drainer = corio::create_task(c.writer.drain());
    co_await corio_test::turns(20);
    EXPECT_FALSE(drainer.done());  // the peer reads nothing: drain must wait
    EXPECT_NE(drainer.awaiting().find("drain"), std::string::npos) << drainer.awaiting();
    EXPECT_GT(c.writer.buffered(), StreamWriter::kHighWater);

    // The peer starts reading (off the loop thread): drain returns once below the low-water mark.
    auto peer_fd = c.peer.get();
    auto received =
        corio::create_task(corio::to_thread([peer_fd] { return corio_test::raw_read_all(peer_fd); }));
    co_await drainer;
    EXPECT_LE(c.writer.buffered(), StreamWriter::kLowWater);
    c.writer.close();
    co_await c.writer.wait_closed();
    std::string got = co_await received;
    EXPECT_EQ(got.size(), big.size());
    EXPECT_TRUE(got == big);
  }());
}

// A drain() cancelled while it waits ends with CancelledError and loses nothing: the writer goes on, a later
// drain() returns once the peer reads, and every byte arrives in order.
TEST_F(StreamTest, ADrainCancelledWhileItWaitsLosesNothing) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    int small = 16 * 1024;
    ::setsockopt(c.peer.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    std::string big = pattern(4 << 20);  // more than loopback's buffers take
    c.writer.write(big);
    auto drainer = corio::create_task(c.writer.drain());
    co_await corio_test::turns(20);
    CO_ASSERT(!drainer.done());  // the peer reads nothing: it waits
    drainer.cancel();
    EXPECT_THROW(co_await drainer, corio::CancelledError);
    const std::string tail = "tail";
    c.writer.write(tail);
    auto peer_fd = c.peer.get();
    auto received =
        corio::create_task(corio::to_thread([peer_fd] { return corio_test::raw_read_all(peer_fd); }));
    co_await c.writer.drain();
    EXPECT_LE(c.writer.buffered(), StreamWriter::kLowWater);
    c.writer.close();
    co_await c.writer.wait_closed();
    std::string got = co_await received;
    EXPECT_EQ(got.size(), big.size() + tail.size());
    EXPECT_TRUE(got == big + tail) << "the bytes came out changed or out of order";
  }());
}

TEST_F(StreamTest, DrainAfterEachWriteKeepsMemoryBounded) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    int small = 16 * 1024;
    ::setsockopt(c.peer.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);

    constexpr std::size_t kChunk = 32 * 1024;
    constexpr int kChunks = 512;  // 16 MiB in all: far more than the kernel buffers hold
    std::size_t max_buffered = 0;
    std::size_t before_drain = 0;  // buffered() when the latest drain() began
    int written = 0;
    // (A coroutine lambda's captures die with the closure object: state goes in as parameters.)
    auto writer_task = corio::create_task(
        [](StreamWriter& w, std::size_t& max_buf, std::size_t& before, int& count) -> Task<> {
          for (int i = 0; i < kChunks; ++i) {
            w.write(pattern(kChunk, i * kChunk));
            before = w.buffered();
            max_buf = std::max(max_buf, before);
            co_await w.drain();
            max_buf = std::max(max_buf, w.buffered());
            ++count;
          }
          w.close();
        }(c.writer, max_buffered, before_drain, written));

    // While nobody reads, the writer stalls inside a drain() that began above the high-water mark; it
    // stays there while more than the low-water mark is buffered. (On io_uring every send completes on a
    // later turn, so drain() also waits a turn or two before the kernel's buffers are full: the stall is
    // the point where 20 turns pass without progress.)
    int stalled_at = -1;
    for (int round = 0; round < 1000 && stalled_at != written; ++round) {
      CO_ASSERT(co_await corio_test::until(
          [&] { return writer_task.awaiting().find("drain") != std::string::npos; }));
      stalled_at = written;
      co_await corio_test::turns(20);
    }
    EXPECT_GT(before_drain, StreamWriter::kHighWater);
    EXPECT_EQ(written, stalled_at);  // no progress without a reader
    EXPECT_LT(written, kChunks);
    EXPECT_NE(writer_task.awaiting().find("drain"), std::string::npos);
    EXPECT_GT(c.writer.buffered(), StreamWriter::kLowWater);

    auto peer_fd = c.peer.get();
    std::string got = co_await corio::to_thread([peer_fd] { return corio_test::raw_read_all(peer_fd); });
    co_await writer_task;
    EXPECT_EQ(written, kChunks);
    // Awaiting drain after each write bounds the buffer: the high-water mark plus one chunk.
    EXPECT_LE(max_buffered, StreamWriter::kHighWater + kChunk);
    EXPECT_EQ(got.size(), kChunk * kChunks);
    EXPECT_TRUE(got == pattern(kChunk * kChunks));
  }());
}

TEST_F(StreamTest, DrainThrowsWhenThePeerResetsWhileItWaits) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    int small = 16 * 1024;
    ::setsockopt(c.peer.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    c.writer.write(pattern(4 << 20));
    auto drainer = corio::create_task(c.writer.drain());
    CO_ASSERT(
        co_await corio_test::until([&] { return drainer.awaiting().find("drain") != std::string::npos; }));
    c.peer.reset_connection();  // RST
    bool threw = false;
    try {
      co_await drainer;
    } catch (const corio::ConnectionResetError&) {
      threw = true;
    } catch (const corio::BrokenPipeError&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    // And it keeps saying so.
    threw = false;
    try {
      co_await c.writer.drain();
    } catch (const corio::ConnectionError&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
  }());
}

TEST_F(StreamTest, DrainThrowsOnceAClosedPeerIsGoneNeverSigpipe) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    c.peer.reset();  // an orderly close: FIN; our next sends draw an RST, then EPIPE
    // Reading sees EOF first.
    EXPECT_EQ(co_await c.reader.read(), "");
    bool threw = false;
    std::string what;
    for (int i = 0; i < 1000 && !threw; ++i) {
      try {
        c.writer.write(pattern(64 * 1024));
        co_await c.writer.drain();
      } catch (const corio::ConnectionResetError& e) {
        threw = true;
        what = e.what();
      } catch (const corio::BrokenPipeError& e) {
        threw = true;
        what = e.what();
      }
      if (!threw) co_await corio_test::turns(1);
    }
    EXPECT_TRUE(threw);
    EXPECT_NE(what.find("127.0.0.1:"), std::string::npos) << what;
  }());
}

TEST_F(StreamTest, PeerResetWhileReadingThrowsConnectionResetError) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    raw_send(c.peer.get(), "complete line\n");
    EXPECT_EQ(co_await c.reader.readline(), "complete line\n");
    auto t = corio::create_task(c.reader.readline());
    CO_ASSERT(
        co_await corio_test::until([&] { return t.awaiting().find("read from") != std::string::npos; }));
    EXPECT_FALSE(c.writer.is_closing());
    c.peer.reset_connection();
    bool threw = false;
    try {
      (void)co_await t;
    } catch (const corio::ConnectionResetError& e) {
      threw = true;
      EXPECT_EQ(e.code(), ECONNRESET);
    }
    EXPECT_TRUE(threw);
    // As in asyncio: the writer is closing, and drain() raises the reader's error though nothing is
    // buffered.
    EXPECT_TRUE(c.writer.is_closing());
    CO_EXPECT_THROW_AS(co_await c.writer.drain(), corio::ConnectionResetError, e,
                       { EXPECT_EQ(e.code(), ECONNRESET); });
  }());
}

TEST_F(StreamTest, PeerResetBeforeReadingThrowsForEveryReadCall) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    c.peer.reset_connection();
    co_await corio_test::turns(2);
    bool threw = false;
    try {
      (void)co_await c.reader.readexactly(5);
    } catch (const corio::ConnectionResetError&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    threw = false;
    try {
      (void)co_await c.reader.read();
    } catch (const corio::ConnectionResetError&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
  }());
}

TEST_F(StreamTest, WriteEofHalfClosesAndThePeerCanStillAnswer) {
  run_guarded([]() -> Task<> {
    corio::Server server = co_await corio::start_server(
        [](StreamReader r, StreamWriter w) -> Task<> {
          std::string all = co_await r.read();  // until the client's EOF
          EXPECT_TRUE(r.at_eof());
          w.write("got " + std::to_string(all.size()) + ": " + all);
          co_await w.drain();
          w.close();
        },
        "127.0.0.1", 0);
    auto [reader, writer] = co_await corio::open_connection("127.0.0.1", server.port());
    writer.write("half");
    writer.write("-closed");
    writer.write_eof();
    bool threw = false;
    try {
      writer.write("more");
    } catch (const corio::RuntimeError&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    EXPECT_FALSE(writer.is_closing());
    EXPECT_EQ(co_await reader.read(), "got 11: half-closed");
    EXPECT_TRUE(reader.at_eof());
    writer.close();
    co_await writer.wait_closed();
    EXPECT_TRUE(writer.is_closing());
  }());
}

TEST_F(StreamTest, PeernameOnBothSides) {
  run_guarded([]() -> Task<> {
    std::string server_side_peer;
    corio::Event seen;
    corio::Server server = co_await corio::start_server(
        [&](StreamReader, StreamWriter w) -> Task<> {
          server_side_peer = w.peername();
          seen.set();
          co_return;
        },
        "127.0.0.1", 0);
    auto [reader, writer] = co_await corio::open_connection("127.0.0.1", server.port());
    EXPECT_EQ(writer.peername(), "127.0.0.1:" + std::to_string(server.port()));
    co_await seen.wait();
    EXPECT_EQ(server_side_peer.rfind("127.0.0.1:", 0), 0u) << server_side_peer;
    // The client's own address: this process has a socket whose local end is it and whose peer is the server.
    EXPECT_GE(corio_test::find_socket_fd(server_side_peer, writer.peername()), 0) << server_side_peer;
    EXPECT_EQ(writer.sockname(), server_side_peer);  // (asyncio's get_extra_info("sockname"))
    EXPECT_EQ(co_await reader.read(), "");           // the handler returned: the server closed
  }());
}

TEST_F(StreamTest, ReadsAfterTheWriterClosedSeeEof) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    c.writer.close();
    EXPECT_TRUE(c.writer.is_closing());
    co_await c.writer.wait_closed();
    EXPECT_EQ(co_await c.reader.read(), "");
    EXPECT_TRUE(c.reader.at_eof());
    // The peer sees our FIN.
    char b;
    EXPECT_EQ(::recv(c.peer.get(), &b, 1, 0), 0);
  }());
}

TEST_F(StreamTest, DroppingBothEndsFlushesThenCloses) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    std::string data = pattern(1 << 20);
    c.writer.write(data);
    {
      // Both ends go away with most of the data still buffered: it is flushed, then the socket closes.
      StreamReader r = std::move(c.reader);
      StreamWriter w = std::move(c.writer);
    }
    int fd = c.peer.get();
    std::string got = co_await corio::to_thread([fd] { return corio_test::raw_read_all(fd); });
    EXPECT_EQ(got.size(), data.size());
    EXPECT_TRUE(got == data);
  }());
}

// Reads what the peer end receives until EOF, with a generous poll() timeout as a hang guard only; returns
// false if EOF never came (the corio end was never closed: a leaked descriptor).
bool peer_sees_eof(int fd, std::size_t* received = nullptr) {
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return false;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
    if (received) *received += static_cast<std::size_t>(n);
  }
}

TEST_F(StreamTest, ReadPendingWhenRunEndsIsReleased) {
  // run() cancels the task blocked in readline; the connection must close and nothing may leak (LSan).
  corio_test::RawListener listener;
  corio_test::Fd peer;
  corio::run([](corio_test::RawListener& l, corio_test::Fd& peer) -> Task<> {
    auto [r, w] = co_await corio::open_connection("127.0.0.1", l.port());
    peer = l.accept();
    corio::create_task([](StreamReader r, StreamWriter) -> Task<> { (void)co_await r.readline(); }(
                                                            std::move(r), std::move(w)));
    co_await corio_test::turns(3);
  }(listener, peer));
  EXPECT_TRUE(peer_sees_eof(peer.get()));
}

TEST_F(StreamTest, UnflushedWriteWhenRunEndsIsReleased) {
  // The peer reads nothing, so most of the data is still buffered when run() ends: the descriptor must
  // still be closed (the peer sees EOF once it reads) and nothing may leak (LSan).
  corio_test::RawListener listener;
  corio_test::Fd peer;
  corio::run([](corio_test::RawListener& l, corio_test::Fd& peer) -> Task<> {
    auto [r, w] = co_await corio::open_connection("127.0.0.1", l.port());
    peer = l.accept();
    int small = 16 * 1024;
    ::setsockopt(peer.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    w.write(pattern(8 << 20));
    EXPECT_GT(w.buffered(), 0u);
  }(listener, peer));
  std::size_t received = 0;
  EXPECT_TRUE(peer_sees_eof(peer.get(), &received));
  EXPECT_LT(received, 8u << 20);  // the unsent rest was dropped with the loop
}

TEST_F(StreamTest, StreamsOutlivingTheirLoopCloseSafely) {
  corio_test::RawListener listener;
  auto streams = corio::run(corio::open_connection("127.0.0.1", listener.port()));
  corio_test::Fd peer = listener.accept();
  // The loop is gone: using the stream is an error, closing must not touch the dead loop.
  EXPECT_THROW(streams.second.write("late"), corio::RuntimeError);
  EXPECT_EQ(streams.second.peername(), "127.0.0.1:" + std::to_string(listener.port()));
  streams = {};
  EXPECT_TRUE(peer_sees_eof(peer.get()));
}

TEST_F(StreamTest, UnixSocketStreams) {
  std::string dir = std::filesystem::temp_directory_path() / "corio-net-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  std::string path = dir + "/echo.sock";
  run_guarded([](std::string path) -> Task<> {
    std::string peer_seen;
    corio::Server server = co_await corio::start_unix_server(
        [&](StreamReader r, StreamWriter w) -> Task<> {
          peer_seen = w.peername();
          for (;;) {
            std::string line = co_await r.readline();
            if (line.empty()) break;
            w.write("unix:" + line);
          }
          w.close();
        },
        path);
    EXPECT_EQ(server.port(), 0);
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    auto [reader, writer] = co_await corio::open_unix_connection(path);
    EXPECT_EQ(writer.peername(), path);
    writer.write("a\nb\n");
    EXPECT_EQ(co_await reader.readline(), "unix:a\n");
    EXPECT_EQ(co_await reader.readline(), "unix:b\n");
    writer.write_eof();
    EXPECT_EQ(co_await reader.read(), "");
    EXPECT_EQ(peer_seen, "");  // the client's socket is unnamed (asyncio's peername: '')
    EXPECT_EQ(writer.sockname(), "");
    server.close();
    co_await server.wait_closed();
    EXPECT_NE(::stat(path.c_str(), &st), 0);  // the socket file is removed
    // Nobody listens any more.
    bool refused = false;
    try {
      (void)co_await corio::open_unix_connection(path);
    } catch (const corio::OSError& e) {
      refused = true;
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    EXPECT_TRUE(refused);
  }(path));
  std::filesystem::remove_all(dir);
}

// A stale socket file: the path a crashed server's socket was bound to, never unlinked, nobody listening.
TEST_F(StreamTest, UnixServerReplacesAStaleSocketFile) {
  std::string dir = std::filesystem::temp_directory_path() / "corio-net-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  std::string path = dir + "/stale.sock";
  {
    corio_test::Fd raw(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    ASSERT_LT(path.size(), sizeof addr.sun_path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(::bind(raw.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
    ASSERT_EQ(::listen(raw.get(), 1), 0);
  }  // closed, the file left behind
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  ASSERT_TRUE(S_ISSOCK(st.st_mode));
  run_guarded([](std::string path) -> Task<> {
    // Stale indeed: nobody answers on it.
    CO_EXPECT_THROW_AS(co_await corio::open_unix_connection(path), corio::ConnectionRefusedError, e, {});
    auto echo = [](StreamReader r, StreamWriter w) -> Task<> {
      w.write(co_await r.readline());
      w.close();
    };
    // Without removing the stale file first, the bind would fail with EADDRINUSE.
    corio::Server server = co_await corio::start_unix_server(echo, path);
    auto [reader, writer] = co_await corio::open_unix_connection(path);
    writer.write("x\n");
    EXPECT_EQ(co_await reader.readline(), "x\n");
  }(path));
  std::filesystem::remove_all(dir);
}

// Only a socket file is taken for stale: anything else at the path stays, and the server does not start.
TEST_F(StreamTest, UnixServerLeavesAFileThatIsNotASocketAlone) {
  std::string dir = std::filesystem::temp_directory_path() / "corio-net-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  std::string path = dir + "/not-a-socket";
  { std::ofstream(path) << "keep me"; }
  run_guarded([](std::string path) -> Task<> {
    CO_EXPECT_THROW_AS(
        co_await corio::start_unix_server([](StreamReader, StreamWriter) -> Task<> { co_return; }, path),
        corio::OSError, e, {
          EXPECT_EQ(e.code(), EADDRINUSE);
          EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
        });
  }(path));
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "keep me");
  std::filesystem::remove_all(dir);
}

// A generator that outlives its loop, whose consumer task was waiting inside it at a stream read when the
// loop closed: nothing reaches the destroyed task afterwards (the stream's read completion, cancelled as the
// backend closed, used to ask the freed task whether it still waited: a use-after-free on both backends).
TEST_F(StreamTest, GeneratorLeftWaitingAtAReadWhenItsLoopClosesLetsGo) {
  std::unique_ptr<corio::Server> server;
  std::unique_ptr<std::pair<corio::StreamReader, corio::StreamWriter>> conn;
  std::unique_ptr<corio::AsyncGenerator<std::string>> gen;
  auto chunks = [](corio::StreamReader& r) -> corio::AsyncGenerator<std::string> {
    for (;;) co_yield co_await r.read(100);
  };
  {
    corio::EventLoop loop;
    loop.run_until_complete([](auto& server, auto& conn, auto& gen, auto& chunks) -> Task<> {
      auto silent = [](corio::StreamReader, corio::StreamWriter w) -> Task<> { co_await w.wait_closed(); };
      server = std::make_unique<corio::Server>(co_await corio::start_server(silent, "127.0.0.1", 0));
      conn = std::make_unique<std::pair<corio::StreamReader, corio::StreamWriter>>(
          co_await corio::open_connection("127.0.0.1", server->port()));
      gen = std::make_unique<corio::AsyncGenerator<std::string>>(chunks(conn->first));
      corio::create_task(
          [](corio::AsyncGenerator<std::string>& g) -> Task<> { (void)co_await g.next(); }(*gen));
      co_await corio_test::turns(3);  // the consumer now waits inside the generator, at the read
    }(server, conn, gen, chunks));
  }
  gen.reset();
  conn.reset();
  server.reset();
}

namespace {
// Writes a byte and drains until the connection's error comes (the first send after the peer's RST fails, a
// turn later on io_uring); false if it never does.
Task<bool> write_until_it_fails(corio::StreamWriter& w) {
  for (int i = 0; i < 100; ++i) {
    w.write("y");
    try {
      co_await w.drain();
    } catch (const corio::ConnectionError&) {
      co_return true;
    }
    co_await corio_test::turns(1);
  }
  co_return false;
}
}  // namespace

// The peer resets the connection and a write finds it out first (taking the socket's error): later reads
// raise that error, as asyncio's reader does, instead of returning a clean EOF ("") that would pass a cut
// reply off as complete.
TEST_F(StreamTest, ReadAfterAWriteFoundTheResetRaisesIt) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    c.peer.reset_connection();  // RST
    CO_ASSERT(co_await write_until_it_fails(c.writer));
    CO_EXPECT_THROW_AS(co_await c.reader.read(10), corio::ConnectionError, e, (void)e);
    CO_EXPECT_THROW_AS(co_await c.reader.readexactly(1), corio::ConnectionError, e, (void)e);
  }());
}

// asyncio: a write that finds the reset loses the connection (connection_lost(exc) sets the reader's
// exception); close() after that does not turn it into a clean EOF: reads still raise, at_eof() stays false.
TEST_F(StreamTest, CloseAfterAWriteFoundTheResetDoesNotTurnItIntoEof) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    c.peer.reset_connection();  // RST
    CO_ASSERT(co_await write_until_it_fails(c.writer));
    c.writer.close();
    EXPECT_TRUE(c.writer.is_closing());
    EXPECT_FALSE(c.reader.at_eof());
    CO_EXPECT_THROW_AS(co_await c.reader.read(10), corio::ConnectionError, e, (void)e);
    CO_EXPECT_THROW_AS(co_await c.writer.wait_closed(), corio::ConnectionError, e, (void)e);
  }());
}

// asyncio's read(0) and readexactly(0) raise the connection's exception like every other read.
TEST_F(StreamTest, ZeroSizedReadsRaiseTheConnectionsError) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    c.peer.reset_connection();  // RST
    CO_EXPECT_THROW_AS(co_await c.reader.read(10), corio::ConnectionResetError, e, (void)e);
    CO_EXPECT_THROW_AS(co_await c.reader.read(0), corio::ConnectionResetError, e, (void)e);
    CO_EXPECT_THROW_AS(co_await c.reader.readexactly(0), corio::ConnectionResetError, e, (void)e);
    CO_EXPECT_THROW_AS(co_await c.reader.readuntil(";"), corio::ConnectionResetError, e, (void)e);
  }());
}

// asyncio's close() stops reading at once (transport.close() removes the reader): data the peer sends after
// close() is never delivered; a read waits for the flush to end and gets EOF.
TEST_F(StreamTest, NoDataIsReadAfterClose) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    std::string big(4 << 20, 'z');
    c.writer.write(big);
    CO_ASSERT(c.writer.buffered() > 0);
    c.writer.close();
    raw_send(c.peer.get(), "x");  // after our close()
    auto drain =
        corio::create_task(corio::to_thread([fd = c.peer.get()] { return corio_test::raw_read_all(fd); }));
    EXPECT_EQ(co_await c.reader.read(10), "");
    (void)co_await drain;
  }());
}

// drain() after close() raises ConnectionResetError, as asyncio's does ("Connection lost").
TEST_F(StreamTest, DrainAfterCloseRaisesConnectionResetError) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    c.writer.write("bye");
    c.writer.close();
    CO_EXPECT_THROW_AS(co_await c.writer.drain(), corio::ConnectionResetError, e, (void)e);
    co_await c.writer.wait_closed();
    CO_EXPECT_THROW_AS(co_await c.writer.drain(), corio::ConnectionResetError, e, (void)e);
    EXPECT_EQ(corio_test::raw_read_all(c.peer.get()), "bye");  // (closed: EOF follows the data)
  }());
}

}  // namespace

// close() with nothing buffered closes the socket at once, on either backend: the peer sees EOF before the
// loop turns again (on io_uring the receive in flight held the socket, and its FIN, until the next
// submission). The peer's wait blocks the loop, so only close() itself can have sent the FIN.
TEST_F(StreamTest, ClosingWithAReadInFlightSendsTheFinAtOnce) {
  run_guarded([]() -> Task<> {
    auto c = co_await corio_test::connect_to_raw_peer();
    auto reading = corio::create_task(
        [](StreamReader& r) -> Task<std::string> { co_return co_await r.read(); }(c.reader));
    co_await corio::sleep(0s);  // the read waits on the socket
    co_await corio::sleep(0s);
    c.writer.close();
    pollfd p{c.peer.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 5000), 1) << "the peer saw nothing within 5 s of close()";
    char buf[8];
    EXPECT_EQ(::recv(c.peer.get(), buf, sizeof buf, MSG_DONTWAIT), 0);  // EOF
    EXPECT_EQ(co_await reading, "");
  }());
}

// A peer that keeps the socket full does not starve the loop: a task reading in a loop suspends at least
// once per 16 reads (one loop turn each), so other tasks run meanwhile. On epoll a read that found data
// never suspended: with 8 MiB already queued, 128 reads ran back to back and nothing else ran (a fast
// sender starved a server's other clients).
constexpr std::size_t kQueued = std::size_t{8} << 20;
TEST_F(StreamTest, ReadingAFullSocketLetsOtherTasksRun) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  corio_test::Fd raw(sv[1]);
  const int big = 64 << 20;
  if (::setsockopt(raw.get(), SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) != 0) {
    ::close(sv[0]);
    GTEST_SKIP() << "SO_SNDBUFFORCE needs CAP_NET_ADMIN: cannot queue 4 MiB in one socket";
  }
  corio_test::raw_send(raw.get(), std::string(kQueued, 'z'));  // all queued before anything reads
  ::shutdown(raw.get(), SHUT_WR);
  run_guarded([](int fd) -> Task<> {
    auto [reader, writer] = corio::detail::make_stream(fd, true, "pair");
    bool done = false;
    long ticks = 0;
    auto ticker = corio::create_task([](bool& done, long& ticks) -> Task<> {
      while (!done) {
        ++ticks;
        co_await corio::sleep(0s);
      }
    }(done, ticks));
    co_await corio::sleep(0s);  // the ticker is under way
    const long before = ticks;
    std::size_t got = 0;
    long reads = 0;
    for (;;) {
      const std::string s = co_await reader.read(65536);
      if (s.empty()) break;
      got += s.size();
      ++reads;
    }
    const long during = ticks - before;
    done = true;
    co_await ticker;
    EXPECT_EQ(got, kQueued);
    // At least one turn per 2 MiB read (epoll: 16 reads of 64 KiB a turn; io_uring: what one poll reaps),
    // and on epoll exactly its budget: a turn per 16 reads (src/io/readiness_core.hpp, kReadsPerTurn).
    EXPECT_GE(during, static_cast<long>(kQueued >> 21) - 1)
        << during << " ticks during " << reads << " reads";
    if (corio::get_running_loop().backend() == corio::Backend::epoll) {
      EXPECT_GE(during, reads / 16 - 1) << during << " ticks during " << reads << " reads";
    }
  }(sv[0]));
}

// wait_closed() ends once the connection is lost (a read or a write found it reset), as asyncio's
// transport closes itself on such an error: it waited for a close() that nothing would make. It then
// raises the error that lost the connection, every time and after close() too, as asyncio's wait_closed()
// raises the exception connection_lost() was given; a clean close returns.
TEST_F(StreamTest, WaitClosedRaisesTheErrorThatLostTheConnection) {
  run_guarded([]() -> Task<> {
    auto c = co_await corio_test::connect_to_raw_peer();
    c.peer.reset_connection();
    CO_EXPECT_THROW_AS(co_await c.reader.read(10), corio::ConnectionResetError, e, (void)e);
    EXPECT_TRUE(c.writer.is_closing());
    // (wait_for: TimeoutError if it never ended)
    CO_EXPECT_THROW_AS(co_await corio::wait_for(c.writer.wait_closed(), 10s), corio::ConnectionResetError, e,
                       (void)e);
    c.writer.close();
    CO_EXPECT_THROW_AS(co_await corio::wait_for(c.writer.wait_closed(), 10s), corio::ConnectionResetError, e,
                       (void)e);

    auto d = co_await corio_test::connect_to_raw_peer();
    d.peer.reset_connection();
    bool raised = false;
    for (int i = 0; i < 5 && !raised; ++i) {  // (on io_uring the send's error arrives a turn later)
      try {
        d.writer.write("reply\n");
        co_await d.writer.drain();
        co_await corio::sleep(0s);
      } catch (const corio::ConnectionError&) {
        raised = true;
      }
    }
    EXPECT_TRUE(raised);
    CO_EXPECT_THROW_AS(co_await corio::wait_for(d.writer.wait_closed(), 10s), corio::ConnectionError, e,
                       (void)e);

    // A clean end: EOF read, then close().
    auto f = co_await corio_test::connect_to_raw_peer();
    f.peer.reset();
    EXPECT_EQ(co_await f.reader.read(10), "");
    f.writer.close();
    co_await corio::wait_for(f.writer.wait_closed(), 10s);
  }());
}

// A stream kept past its run() and used in the next run(): the new loop is often at the old one's address
// (run() makes it on its stack), which the stream took for its own loop and used the old, freed backend
// (ASan: heap-use-after-free). It is refused with RuntimeError, as outside any loop.
TEST_F(StreamTest, AStreamKeptPastItsRunIsRefusedInTheNextRun) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  using Pair = std::pair<StreamReader, StreamWriter>;
  std::optional<Pair> kept;
  corio::run([](int fd, std::optional<Pair>& kept) -> Task<> {
    kept.emplace(corio::detail::make_stream(fd, true, "pair"));
    co_return;
  }(sv[0], kept));
  bool write_refused = false, read_refused = false;
  corio::run([](std::optional<Pair>& kept, bool& w, bool& r) -> Task<> {
    try {
      kept->second.write("x");
    } catch (const corio::RuntimeError&) {
      w = true;
    }
    try {
      (void)co_await kept->first.read(1);
    } catch (const corio::RuntimeError&) {
      r = true;
    }
  }(kept, write_refused, read_refused));
  EXPECT_TRUE(write_refused);
  EXPECT_TRUE(read_refused);
  kept.reset();
  ::close(sv[1]);
}

// EOF read, then a write fails (the peer had closed): reads from then on raise the connection's error, as
// asyncio's (they returned "" for ever; with the write failing first they already raised).
TEST_F(StreamTest, AWriteFailingAfterEofMakesLaterReadsRaise) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    c.peer.reset();  // FIN
    EXPECT_EQ(co_await c.reader.read(), "");
    bool raised = false;
    for (int i = 0; i < 10 && !raised; ++i) {
      c.writer.write("x");
      try {
        co_await c.writer.drain();
        co_await corio::sleep(0s);
      } catch (const corio::ConnectionError&) {
        raised = true;
      }
    }
    CO_ASSERT(raised);
    CO_EXPECT_THROW_AS(co_await c.reader.read(10), corio::ConnectionError, e, (void)e);
  }());
}

// A read found the reset; a write after it, then drain(): asyncio raises the reader's error
// (ConnectionResetError) on every backend and ignores the write.
TEST_F(StreamTest, DrainAfterAReadFoundTheResetRaisesTheReadersError) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    c.peer.reset_connection();
    CO_EXPECT_THROW_AS(co_await c.reader.read(10), corio::ConnectionResetError, e, (void)e);
    c.writer.write("x");
    for (int i = 0; i < 3; ++i) {
      CO_EXPECT_THROW_AS(co_await c.writer.drain(), corio::ConnectionResetError, e, (void)e);
      co_await corio::sleep(0s);
    }
    CO_EXPECT_THROW_AS(co_await corio::wait_for(c.writer.wait_closed(), 10s), corio::ConnectionResetError, e,
                       (void)e);
  }());
}

// After a read (io_uring keeps its multishot receive armed), the peer resets while nobody reads;
// the next write finds it out. epoll's send gets ECONNRESET (as asyncio, whose background read gets it); on
// io_uring the armed receive took the socket's error and the send gets EPIPE.
TEST_F(StreamTest, AResetNobodyReadIsAConnectionResetOnEveryBackend) {
  run_guarded([]() -> Task<> {
    auto c = co_await connect_to_raw_peer();
    auto first = corio::create_task(c.reader.readline());
    co_await corio_test::turns(3);  // the read waits: the backend watches (epoll) or receives (io_uring)
    raw_send(c.peer.get(), "hi\n");
    EXPECT_EQ(co_await first, "hi\n");
    c.peer.reset_connection();  // RST, while nobody reads
    co_await corio_test::turns(3);
    bool raised = false;
    std::string what;
    for (int i = 0; i < 5 && !raised; ++i) {
      c.writer.write("reply\n");
      try {
        co_await c.writer.drain();
        co_await corio::sleep(0s);
      } catch (const corio::ConnectionResetError&) {
        raised = true;
      } catch (const std::exception& e) {
        raised = true;
        what = e.what();
      }
    }
    EXPECT_TRUE(raised);
    EXPECT_EQ(what, "") << "drain() raised another error than ConnectionResetError";
    CO_EXPECT_THROW_AS(co_await corio::wait_for(c.writer.wait_closed(), 10s), corio::ConnectionResetError, e,
                       (void)e);
    CO_EXPECT_THROW_AS(co_await c.reader.read(10), corio::ConnectionResetError, e, (void)e);
  }());
}
