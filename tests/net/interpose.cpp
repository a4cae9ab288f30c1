// The interposed libc calls of interpose.hpp. Each finds libc's definition with dlsym(RTLD_NEXT) and calls
// through to it unless a test asked otherwise.
#include "interpose.hpp"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string_view>

#include "corio/net/socket.hpp"

namespace corio_test {
namespace {

using GetaddrinfoFn = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
using FreeaddrinfoFn = void (*)(addrinfo*);
using ConnectFn = int (*)(int, const sockaddr*, socklen_t);
using ListenFn = int (*)(int, int);

template <class Fn>
Fn real(const char* name) {
  Fn fn = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
  if (!fn) std::abort();
  return fn;
}

struct State {
  std::mutex mu;
  std::map<std::string, int> calls;                             // "host|service" -> getaddrinfo calls
  std::map<std::string, std::vector<std::thread::id>> threads;  // "host|service" -> the calling threads
  std::map<std::string, std::vector<std::string>> fake_names;   // name -> numeric addresses
  std::map<std::string, int> failing_names;                     // name -> errno of its EAI_SYSTEM
  // A fake answer is libc's answers for each address, chained; freeaddrinfo unchains them again, so
  // libc only ever frees lists it made. First node -> the first node of each of libc's lists.
  std::map<addrinfo*, std::vector<addrinfo*>> fake_answers;
  std::condition_variable cv;
  std::map<std::string, int> held;  // name -> lookups waiting in getaddrinfo (HeldName)
  bool watching_connects = false;
  std::map<std::string, int> failing_hosts;  // numeric host -> errno for its connects
  std::vector<std::string> connects;         // destinations, while watching
  int failing_listen = 0;                    // errno for every ::listen (FailingListen), or 0
};
State& state() {
  static State s;
  return s;
}

std::string key(const char* host, const char* service) {
  return std::string(host ? host : "") + "|" + (service ? service : "");
}

}  // namespace

int resolver_calls(const std::string& host, const std::string& service) {
  std::lock_guard<std::mutex> lock(state().mu);
  return state().calls[key(host.c_str(), service.c_str())];
}

std::vector<std::thread::id> resolver_threads(const std::string& host, const std::string& service) {
  std::lock_guard<std::mutex> lock(state().mu);
  return state().threads[key(host.c_str(), service.c_str())];
}

HeldName::HeldName(std::string name) : name_(std::move(name)) {
  std::lock_guard<std::mutex> lock(state().mu);
  state().held[name_] = 0;
}
HeldName::~HeldName() { release(); }
void HeldName::release() {
  std::lock_guard<std::mutex> lock(state().mu);
  state().held.erase(name_);
  state().cv.notify_all();
}
bool HeldName::wait_for_a_lookup(std::chrono::milliseconds limit) const {
  std::unique_lock<std::mutex> lock(state().mu);
  return state().cv.wait_for(lock, limit, [&] {
    auto it = state().held.find(name_);
    return it != state().held.end() && it->second > 0;
  });
}
int HeldName::waiting() const {
  std::lock_guard<std::mutex> lock(state().mu);
  auto it = state().held.find(name_);
  return it == state().held.end() ? 0 : it->second;
}

FakeName::FakeName(std::string name, std::vector<std::string> addresses) : name_(std::move(name)) {
  std::lock_guard<std::mutex> lock(state().mu);
  state().fake_names[name_] = std::move(addresses);
}

FakeName::~FakeName() {
  std::lock_guard<std::mutex> lock(state().mu);
  state().fake_names.erase(name_);
}

FailingName::FailingName(std::string name, int err) : name_(std::move(name)) {
  std::lock_guard<std::mutex> lock(state().mu);
  state().failing_names[name_] = err;
}

FailingName::~FailingName() {
  std::lock_guard<std::mutex> lock(state().mu);
  state().failing_names.erase(name_);
}

FailingListen::FailingListen(int err) {
  std::lock_guard<std::mutex> lock(state().mu);
  state().failing_listen = err;
}

FailingListen::~FailingListen() {
  std::lock_guard<std::mutex> lock(state().mu);
  state().failing_listen = 0;
}

namespace {
std::atomic<bool> failing_threads{false};
}  // namespace

FailingThreads::FailingThreads() { failing_threads = true; }
FailingThreads::~FailingThreads() { failing_threads = false; }

ConnectInterposer::ConnectInterposer() {
  std::lock_guard<std::mutex> lock(state().mu);
  if (state().watching_connects) std::abort();  // one at a time
  state().watching_connects = true;
}

ConnectInterposer::~ConnectInterposer() {
  std::lock_guard<std::mutex> lock(state().mu);
  state().watching_connects = false;
  state().failing_hosts.clear();
  state().connects.clear();
}

void ConnectInterposer::fail(const std::string& host, int err) {
  std::lock_guard<std::mutex> lock(state().mu);
  state().failing_hosts[host] = err;
}

std::vector<std::string> ConnectInterposer::attempts() const {
  std::lock_guard<std::mutex> lock(state().mu);
  return state().connects;
}

}  // namespace corio_test

using corio_test::state;

extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  static auto real_getaddrinfo = corio_test::real<corio_test::GetaddrinfoFn>("getaddrinfo");
  std::vector<std::string> fake;
  bool is_fake = false;
  {
    std::unique_lock<std::mutex> lock(state().mu);
    std::string k = corio_test::key(node, service);
    ++state().calls[k];
    state().threads[k].push_back(std::this_thread::get_id());
    if (node && state().held.count(node)) {
      ++state().held[node];
      state().cv.notify_all();
      state().cv.wait(lock, [&] { return !state().held.count(node); });
    }
    if (node) {
      if (auto it = state().failing_names.find(node); it != state().failing_names.end()) {
        errno = it->second;
        return EAI_SYSTEM;
      }
      if (auto it = state().fake_names.find(node); it != state().fake_names.end()) {
        fake = it->second;
        is_fake = true;
      }
    }
  }
  if (is_fake) {
    // Each address through libc as a numeric host (the socket type and protocol as asked), then chained.
    addrinfo numeric{};
    if (hints) numeric = *hints;
    numeric.ai_flags = (numeric.ai_flags & ~AI_ADDRCONFIG) | AI_NUMERICHOST;
    std::vector<addrinfo*> parts;
    for (const std::string& address : fake) {
      addrinfo* part = nullptr;
      int rc = real_getaddrinfo(address.c_str(), service, &numeric, &part);
      if (rc != 0) {
        for (addrinfo* p : parts) ::freeaddrinfo(p);
        return rc;
      }
      parts.push_back(part);
    }
    if (parts.empty()) return EAI_NONAME;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      addrinfo* tail = parts[i];
      while (tail->ai_next) tail = tail->ai_next;
      tail->ai_next = parts[i + 1];
    }
    *res = parts.front();
    std::lock_guard<std::mutex> lock(state().mu);
    state().fake_answers[parts.front()] = std::move(parts);
    return 0;
  }
  // A .invalid name (RFC 6761: never resolves) is answered here, as the resolver would, instead of asking
  // the configured nameserver.
  std::string_view name = node ? node : "";
  if (name.size() >= 8 && name.substr(name.size() - 8) == ".invalid") return EAI_NONAME;
  return real_getaddrinfo(node, service, hints, res);
}

extern "C" void freeaddrinfo(addrinfo* res) {
  static auto real_freeaddrinfo = corio_test::real<corio_test::FreeaddrinfoFn>("freeaddrinfo");
  std::vector<addrinfo*> parts;
  {
    std::lock_guard<std::mutex> lock(state().mu);
    if (auto it = state().fake_answers.find(res); it != state().fake_answers.end()) {
      parts = std::move(it->second);
      state().fake_answers.erase(it);
    }
  }
  if (parts.empty()) {
    real_freeaddrinfo(res);
    return;
  }
  // Unchain first: each of libc's lists ends where the next one starts.
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    addrinfo* tail = parts[i];
    while (tail->ai_next != parts[i + 1]) tail = tail->ai_next;
    tail->ai_next = nullptr;
  }
  for (addrinfo* p : parts) real_freeaddrinfo(p);
}

extern "C" int connect(int fd, const sockaddr* addr, socklen_t len) {
  static auto real_connect = corio_test::real<corio_test::ConnectFn>("connect");
  if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
    std::lock_guard<std::mutex> lock(state().mu);
    if (state().watching_connects) {
      std::string dest = corio::detail::format_sockaddr(addr, len);
      state().connects.push_back(dest);
      char host[INET6_ADDRSTRLEN] = {};
      const void* in =
          addr->sa_family == AF_INET
              ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(addr)->sin_addr)
              : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr);
      ::inet_ntop(addr->sa_family, in, host, sizeof host);
      if (auto it = state().failing_hosts.find(host); it != state().failing_hosts.end()) {
        errno = it->second;
        return -1;
      }
    }
  }
  return real_connect(fd, addr, len);
}

extern "C" int listen(int fd, int backlog) {
  static auto real_listen = corio_test::real<corio_test::ListenFn>("listen");
  {
    std::lock_guard<std::mutex> lock(state().mu);
    if (int err = state().failing_listen) {
      errno = err;
      return -1;
    }
  }
  return real_listen(fd, backlog);
}

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*),
                              void* arg) {
  using PthreadCreateFn = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static auto real_pthread_create = corio_test::real<PthreadCreateFn>("pthread_create");
  if (corio_test::failing_threads) return EAGAIN;
  return real_pthread_create(thread, attr, start, arg);
}
