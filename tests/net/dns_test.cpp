// getaddrinfo: real lookups ("localhost"), numeric hosts answered inline without the pool, failures as
// GaiError naming the host and the service, and concurrent identical lookups sharing one query.
//
// Which lookups reach the system resolver, and from which thread, is observed through the ::getaddrinfo
// this binary interposes (interpose.hpp).
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "corio/flow/gather.hpp"
#include "corio/net/dns.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/server.hpp"
#include "corio/net/stream.hpp"
#include "interpose.hpp"
#include "net_test_util.hpp"

using namespace std::chrono_literals;
using corio::AddrInfo;
using corio::Task;
using corio_test::run_guarded;

namespace {

int calls_for(const std::string& host, const std::string& service) {
  return corio_test::resolver_calls(host, service);
}
std::vector<std::thread::id> threads_for(const std::string& host, const std::string& service) {
  return corio_test::resolver_threads(host, service);
}

TEST(Dns, LocalhostResolvesToLoopback) {
  run_guarded([]() -> Task<> {
    std::vector<AddrInfo> addrs = co_await corio::getaddrinfo("localhost", "80");
    CO_ASSERT(!addrs.empty());
    for (const AddrInfo& ai : addrs) {
      EXPECT_EQ(ai.port(), 80);
      EXPECT_EQ(ai.socktype, SOCK_STREAM);
      EXPECT_TRUE(ai.family == AF_INET || ai.family == AF_INET6) << ai.family;
      if (ai.family == AF_INET) {
        EXPECT_EQ(ai.host(), "127.0.0.1");
        EXPECT_EQ(ai.to_string(), "127.0.0.1:80");
      } else {
        EXPECT_EQ(ai.host(), "::1");
        EXPECT_EQ(ai.to_string(), "[::1]:80");
      }
    }
  }());
  // Not a numeric host: the lookup ran on a resolver thread, not on the loop's.
  auto threads = threads_for("localhost", "80");
  ASSERT_FALSE(threads.empty());
  for (auto id : threads) EXPECT_NE(id, std::this_thread::get_id());
}

TEST(Dns, ServiceNamesResolve) {
  run_guarded([]() -> Task<> {
    std::vector<AddrInfo> addrs = co_await corio::getaddrinfo("localhost", "http");
    CO_ASSERT(!addrs.empty());
    EXPECT_EQ(addrs.front().port(), 80);
  }());
}

TEST(Dns, NumericHostsAreAnsweredInlineWithoutThePool) {
  run_guarded([]() -> Task<> {
    bool other_ran = false;
    auto other = corio::create_task([](bool& flag) -> Task<> {
      flag = true;
      co_return;
    }(other_ran));
    std::vector<AddrInfo> v4 = co_await corio::getaddrinfo("127.0.0.1", "8080");
    std::vector<AddrInfo> v6 = co_await corio::getaddrinfo("::1", "8081");
    // No suspension: the other task did not get a turn.
    EXPECT_FALSE(other_ran);
    CO_ASSERT(v4.size() == 1u);
    EXPECT_EQ(v4[0].family, AF_INET);
    EXPECT_EQ(v4[0].to_string(), "127.0.0.1:8080");
    CO_ASSERT(v6.size() == 1u);
    EXPECT_EQ(v6[0].family, AF_INET6);
    EXPECT_EQ(v6[0].to_string(), "[::1]:8081");
    EXPECT_EQ(v6[0].host(), "::1");
    co_await other;
  }());
  // Resolved on this (the loop's) thread.
  for (auto [host, service] : {std::pair{"127.0.0.1", "8080"}, std::pair{"::1", "8081"}}) {
    auto threads = threads_for(host, service);
    ASSERT_FALSE(threads.empty()) << host;
    for (auto id : threads) EXPECT_EQ(id, std::this_thread::get_id()) << host;
  }
}

TEST(Dns, NumericHostWithUnknownServiceThrowsGaiError) {
  run_guarded([]() -> Task<> {
    bool threw = false;
    try {
      (void)co_await corio::getaddrinfo("127.0.0.1", "no-such-service-corio");
    } catch (const corio::GaiError& e) {
      threw = true;
      EXPECT_NE(std::string(e.what()).find("no-such-service-corio"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(threw);
  }());
}

// A name under .invalid never resolves (RFC 6761). If the resolver nevertheless waits on a network that
// does not answer, the guard below turns the wait into a skip instead of a hang.
TEST(Dns, UnresolvableNameThrowsGaiErrorNamingHostAndService) {
  bool timed_out = false;
  run_guarded([](bool& timed_out) -> Task<> {
    try {
      (void)co_await corio::wait_for(corio::getaddrinfo("no-such-host.corio-test.invalid", "4711"), 5s);
      ADD_FAILURE() << "a .invalid name resolved";
    } catch (const corio::TimeoutError&) {
      timed_out = true;
    } catch (const corio::GaiError& e) {
      // Names the host and the service: "getaddrinfo(<host>, <service>): <gai_strerror>".
      EXPECT_NE(std::string(e.what()).find("getaddrinfo(no-such-host.corio-test.invalid, 4711): "),
                std::string::npos)
          << e.what();
      EXPECT_EQ(e.code(), EAI_NONAME);
    }
  }(timed_out));
  if (timed_out) GTEST_SKIP() << "the system resolver did not answer for a .invalid name within 5 s";
}

// EAI_SYSTEM ("System error") names the errno behind it, read on the resolver's thread.
TEST(Dns, ASystemErrorOfTheResolverNamesItsErrno) {
  corio_test::FailingName name("no-descriptors.corio-test.invalid", EMFILE);
  run_guarded([]() -> Task<> {
    CO_EXPECT_THROW_AS(
        co_await corio::getaddrinfo("no-descriptors.corio-test.invalid", "80"), corio::GaiError, e, {
          EXPECT_EQ(e.code(), EAI_SYSTEM);
          EXPECT_NE(std::string(e.what()).find(std::strerror(EMFILE)), std::string::npos) << e.what();
        });
  }());
}

// A lookup whose thread cannot be started (the system refuses threads: RLIMIT_NPROC, memory) throws an
// OSError naming the question and leaves nothing behind: the same question asked again once threads can be
// had is answered (it waited for ever on the failed lookup's entry), and virtual time is free to move.
TEST(Dns, ALookupWithNoThreadToRunItThrowsAndLeavesNothingBehind) {
  corio_test::FakeName name("no-thread.corio-test.invalid", {"127.0.0.1"});
  run_guarded([]() -> Task<> {
    {
      corio_test::FailingThreads no_threads;
      CO_EXPECT_THROW_AS(
          co_await corio::getaddrinfo("no-thread.corio-test.invalid", "80"), corio::OSError, e, {
            EXPECT_EQ(e.code(), EAGAIN);
            EXPECT_NE(std::string(e.what()).find("getaddrinfo(no-thread.corio-test.invalid, 80)"),
                      std::string::npos)
                << e.what();
          });
    }
    EXPECT_EQ(corio::get_running_loop().core().inhibit_auto_advance_, 0);
    std::vector<AddrInfo> addrs = co_await corio::getaddrinfo("no-thread.corio-test.invalid", "80");
    EXPECT_FALSE(addrs.empty());
  }());
  EXPECT_EQ(calls_for("no-thread.corio-test.invalid", "80"), 1);
}

TEST(Dns, OpenConnectionToAnUnresolvableHostThrowsGaiErrorNamingHostAndPort) {
  bool timed_out = false;
  run_guarded([](bool& timed_out) -> Task<> {
    try {
      (void)co_await corio::wait_for(corio::open_connection("nowhere.corio-test.invalid", 4712), 5s);
      ADD_FAILURE() << "connected to a .invalid name";
    } catch (const corio::TimeoutError&) {
      timed_out = true;
    } catch (const corio::GaiError& e) {
      // The port open_connection was given is the service it looked up: the message names both.
      EXPECT_NE(std::string(e.what()).find("getaddrinfo(nowhere.corio-test.invalid, 4712): "),
                std::string::npos)
          << e.what();
      EXPECT_EQ(e.code(), EAI_NONAME);
    }
  }(timed_out));
  if (timed_out) GTEST_SKIP() << "the system resolver did not answer for a .invalid name within 5 s";
}

TEST(Dns, ConcurrentIdenticalLookupsShareOneQuery) {
  // A service only this test asks for: the count below is this test's.
  const std::string host = "localhost";
  int before = calls_for(host, "4242");
  run_guarded([](std::string host) -> Task<> {
    std::vector<Task<std::vector<AddrInfo>>> lookups;
    for (int i = 0; i < 20; ++i) lookups.push_back(corio::getaddrinfo(host, "4242"));
    auto results = co_await corio::gather(std::move(lookups));
    CO_ASSERT(!results[0].empty());
    for (const auto& r : results) {
      CO_ASSERT(r.size() == results[0].size());
      for (std::size_t i = 0; i < r.size(); ++i) EXPECT_EQ(r[i].to_string(), results[0][i].to_string());
    }
  }(host));
  EXPECT_EQ(calls_for(host, "4242") - before, 1) << "20 concurrent identical lookups should make one query";
}

TEST(Dns, DifferentServicesAreDifferentQueriesAndLaterLookupsAskAgain) {
  const std::string host = "localhost";
  int before80 = calls_for(host, "4280"), before81 = calls_for(host, "4281");
  run_guarded([](std::string host) -> Task<> {
    auto [a, b] = co_await corio::gather(corio::getaddrinfo(host, "4280"), corio::getaddrinfo(host, "4281"));
    CO_ASSERT(!a.empty() && !b.empty());
    EXPECT_EQ(a.front().port(), 4280);
    EXPECT_EQ(b.front().port(), 4281);
    // Sharing is for queries in flight only (no cache): a later lookup asks again.
    auto c = co_await corio::getaddrinfo(host, "4280");
    EXPECT_FALSE(c.empty());
  }(host));
  EXPECT_EQ(calls_for(host, "4280") - before80, 2);
  EXPECT_EQ(calls_for(host, "4281") - before81, 1);
}

// Two lookups share one query held in the resolver; cancelling one ends it at once, while the other goes
// on waiting for that same query (no second one is made) and gets its answer.
TEST(Dns, CancellingOneOfTheSharingLookupsLeavesTheOthers) {
  corio_test::FakeName name("shared-held.invalid", {"127.0.0.1"});
  corio_test::HeldName held("shared-held.invalid");
  const int before = calls_for("shared-held.invalid", "8080");
  run_guarded([](corio_test::HeldName& held) -> Task<> {
    auto first = corio::create_task(corio::getaddrinfo("shared-held.invalid", "8080"));
    auto second = corio::create_task(corio::getaddrinfo("shared-held.invalid", "8080"));
    co_await corio::sleep(0s);  // both started, waiting on the one query
    CO_ASSERT(held.wait_for_a_lookup(10s));
    first.cancel();
    CO_EXPECT_THROW_AS(co_await first, corio::CancelledError, e, (void)e);
    EXPECT_FALSE(second.done());  // still waiting for the query, which is held
    held.release();
    std::vector<AddrInfo> r = co_await second;
    CO_ASSERT(r.size() == 1u);
    EXPECT_EQ(r.front().to_string(), "127.0.0.1:8080");
  }(held));
  EXPECT_EQ(calls_for("shared-held.invalid", "8080") - before, 1);
}

TEST(Dns, OpenConnectionByNameAndServerOnLocalhost) {
  run_guarded([]() -> Task<> {
    // "localhost" may name several addresses: the server listens on each, with one port.
    corio::Server server = co_await corio::start_server(
        [](corio::StreamReader r, corio::StreamWriter w) -> Task<> {
          w.write(co_await r.readline());
          co_await w.drain();
        },
        "localhost", 0);
    CO_ASSERT(server.port() != 0);
    auto [r, w] = co_await corio::open_connection("localhost", server.port());
    w.write("by name\n");
    EXPECT_EQ(co_await r.readline(), "by name\n");
  }());
}

TEST(Dns, LookupsInASecondRunStillWork) {
  // The resolver pool belongs to a loop; a new loop gets a new one.
  for (int i = 0; i < 2; ++i) {
    run_guarded([]() -> Task<> {
      auto r = co_await corio::getaddrinfo("localhost", "22");
      EXPECT_FALSE(r.empty());
    }());
  }
}

}  // namespace

// Each loop has its own resolver, even when two loops take turns on one thread: the second loop's first
// lookup made a new pool in the thread's one slot, joining the first loop's pool on the spot (waiting for
// its lookups: for ever, if one waits for the first loop) and forgetting its questions in flight.
TEST(Dns, TwoLoopsOnOneThreadKeepTheirOwnResolvers) {
  corio_test::FakeName slow("held.invalid", {"127.0.0.1"});
  corio_test::FakeName quick("quick.invalid", {"127.0.0.1"});
  corio_test::HeldName held("held.invalid");
  std::atomic<bool> released_by_watchdog{false};
  std::promise<void> finished;
  std::thread watchdog([&held, &released_by_watchdog, done = finished.get_future()] {
    if (done.wait_for(10s) == std::future_status::timeout) {  // only if B waited for A's lookup
      released_by_watchdog = true;
      held.release();
    }
  });
  corio::EventLoop a;
  corio::TaskHandle<std::vector<AddrInfo>> pending;
  a.run_until_complete([](corio::TaskHandle<std::vector<AddrInfo>>& pending) -> Task<> {
    pending = corio::create_task(corio::getaddrinfo("held.invalid", "80"));
    co_await corio::sleep(0s);
  }(pending));
  ASSERT_TRUE(held.wait_for_a_lookup(10s));  // A's lookup runs on A's resolver
  corio::EventLoop b;
  auto got = b.run_until_complete(corio::getaddrinfo("quick.invalid", "80"));
  EXPECT_FALSE(released_by_watchdog) << "loop B waited for loop A's lookup";
  EXPECT_EQ(got.size(), 1u);
  finished.set_value();
  watchdog.join();
  held.release();
  auto answer =
      a.run_until_complete([](corio::TaskHandle<std::vector<AddrInfo>> h) -> Task<std::vector<AddrInfo>> {
        co_return co_await h;
      }(pending));
  EXPECT_EQ(answer.size(), 1u);
}
