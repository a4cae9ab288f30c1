// getaddrinfo on a small dedicated thread pool, with numeric hosts answered at once and concurrent
// identical lookups sharing one query.
#include "corio/net/dns.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <system_error>

#include "corio/core/event_loop.hpp"
#include "corio/net/errors.hpp"
#include "corio/net/socket.hpp"
#include "corio/sync/detail/wait_list.hpp"
#include "corio/sync/thread.hpp"

namespace corio {

std::string AddrInfo::host() const {
  std::string s = detail::format_sockaddr(reinterpret_cast<const sockaddr*>(&addr), addrlen);
  std::size_t colon = s.rfind(':');
  if (colon == std::string::npos) return s;
  s.resize(colon);
  if (!s.empty() && s.front() == '[') s = s.substr(1, s.size() - 2);
  return s;
}

std::uint16_t AddrInfo::port() const {
  if (family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  if (family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

std::string AddrInfo::to_string() const {
  return detail::format_sockaddr(reinterpret_cast<const sockaddr*>(&addr), addrlen);
}

namespace detail {
namespace {

struct Answer {
  int rc = 0;
  int sys_errno = 0;  // errno, when rc is EAI_SYSTEM
  std::vector<AddrInfo> addrs;
};

// Without AI_ADDRCONFIG, as asyncio: glibc's ignores loopback addresses, so on a host whose only IPv6
// address is ::1 it would refuse even the numeric "::1" (and drop ::1 from "localhost"). Callers that bind
// or connect try each address and pass over a family the host lacks.
Answer lookup_blocking(const std::string& host, const std::string& service, int socktype, int flags) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = flags;
  addrinfo* res = nullptr;
  Answer a;
  a.rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
  if (a.rc == EAI_SYSTEM) a.sys_errno = errno;
  if (a.rc != 0) return a;
  for (addrinfo* p = res; p; p = p->ai_next) {
    AddrInfo ai;
    ai.family = p->ai_family;
    ai.socktype = p->ai_socktype;
    ai.protocol = p->ai_protocol;
    ai.addrlen = p->ai_addrlen;
    std::memcpy(&ai.addr, p->ai_addr, p->ai_addrlen);
    a.addrs.push_back(ai);
  }
  ::freeaddrinfo(res);
  return a;
}

// A query in flight, shared by every task that asked the same question meanwhile.
struct Lookup {
  bool done = false;
  Answer answer;
  WaitList waiters;
};

// The questions in flight of one loop, by key. Held by the lookups' answers too (not the pool: a worker
// must never hold the last reference to what owns its pool).
struct InFlight {
  bool closed = false;  // the loop's shutdown let go of them
  std::map<std::string, std::shared_ptr<Lookup>> lookups;
};

// One loop's resolver, kept in the loop (EventLoop::local), so that loops taking turns on one thread do not
// share it: a second loop's first lookup made a new pool in the thread's one slot, joining the first loop's
// lookups on the spot and forgetting its questions in flight.
struct LoopDns {
  std::unique_ptr<ThreadPool> pool = std::make_unique<ThreadPool>(4);
  std::shared_ptr<InFlight> in_flight = std::make_shared<InFlight>();
};
constexpr char kDnsKey = 0;  // its address names the LoopDns among the loop's locals

LoopDns& dns_state() {
  EventLoop& loop = get_running_loop();
  std::shared_ptr<void>& slot = loop.local(&kDnsKey);
  if (auto* d = static_cast<LoopDns*>(slot.get()); d && !d->in_flight->closed) return *d;
  auto d = std::make_shared<LoopDns>();
  loop.add_shutdown_hook([d]() -> std::function<void()> {
    // Detached on the thread closing the loop; the pool is joined by the function returned (maybe
    // elsewhere). A lookup finishing meanwhile still posts its answer; it no longer finds its entry.
    d->in_flight->closed = true;
    d->in_flight->lookups.clear();
    std::shared_ptr<ThreadPool> pool = std::move(d->pool);
    return [pool = std::move(pool)]() mutable { pool.reset(); };
  });
  slot = d;
  return *d;
}

}  // namespace

Task<std::vector<AddrInfo>> resolve(std::string host, std::string service, int socktype, int flags) {
  // Numeric hosts (and no host) never block: answer without a thread.
  unsigned char buf[sizeof(in6_addr)];
  bool numeric = host.empty() || ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
                 ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
  if (numeric) {
    Answer a = lookup_blocking(host, service, socktype, flags | AI_NUMERICHOST);
    if (a.rc != 0) throw GaiError(a.rc, host, service, a.sys_errno);
    co_return std::move(a.addrs);
  }
  LoopDns& dns = dns_state();
  std::string key = host + '\n' + service + '\n' + std::to_string(socktype) + '\n' + std::to_string(flags);
  std::shared_ptr<Lookup> lookup;
  if (auto it = dns.in_flight->lookups.find(key); it != dns.in_flight->lookups.end()) {
    lookup = it->second;
  } else {
    lookup = std::make_shared<Lookup>();
    EventLoop* loop = &get_running_loop();
    try {
      // Submitted before it is recorded: with no thread to be had (the system refused one) the pool
      // withdraws the job and throws, and nothing must be left behind (an entry later lookups of the same
      // question would wait on for ever, a count keeping virtual time from moving).
      dns.pool->submit([lookup, flights = dns.in_flight, loop, key, host, service, socktype, flags] {
        Answer a = lookup_blocking(host, service, socktype, flags);
        loop->call_soon_threadsafe([lookup, flights, loop, key, a = std::move(a)]() mutable {
          --loop->core().inhibit_auto_advance_;
          lookup->answer = std::move(a);
          lookup->done = true;
          if (!flights->closed) flights->lookups.erase(key);
          lookup->waiters.wake_all();
        });
      });
    } catch (const std::system_error& e) {
      detail::throw_os_error(e.code().value(), "getaddrinfo(" + host + ", " + service +
                                                   "): no resolver thread could be started");
    }
    // (Loop-thread only: the answer, posted back to this thread, cannot come before these two.)
    dns.in_flight->lookups.emplace(key, lookup);
    ++loop->core().inhibit_auto_advance_;
  }
  while (!lookup->done) {
    WaitList::Node node(lookup->waiters, "getaddrinfo");
    co_await node;
  }
  if (lookup->answer.rc != 0) throw GaiError(lookup->answer.rc, host, service, lookup->answer.sys_errno);
  co_return lookup->answer.addrs;
}

}  // namespace detail

Task<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string service) {
  co_return co_await detail::resolve(std::move(host), std::move(service), SOCK_STREAM, 0);
}

}  // namespace corio
