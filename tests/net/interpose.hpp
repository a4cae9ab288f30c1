// libc calls the net tests interpose: this binary defines ::getaddrinfo, ::freeaddrinfo, ::connect,
// ::listen and ::pthread_create (interpose.cpp); the executable's definitions win over libc's, so the
// library's calls come here first and go on to libc unless a test asked otherwise. That lets the tests watch
// the resolver (which lookups reach it, from which thread) and produce what loopback cannot: a name with
// chosen addresses, an unreachable host. Nothing here sends anything off the machine: names ending in
// ".invalid" (RFC 6761) are answered without asking a nameserver, fake names should end in ".invalid" too (so
// that, were the interposition bypassed, the lookup would still stay here), and failing addresses should be
// loopback ones.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace corio_test {

// Calls of ::getaddrinfo(host, service) so far (every thread, every test of this binary).
int resolver_calls(const std::string& host, const std::string& service);
// The threads those calls ran on.
std::vector<std::thread::id> resolver_threads(const std::string& host, const std::string& service);

// While alive, ::getaddrinfo(name, service) answers with `addresses` (numeric, in this order, for any
// service) without the system resolver.
class FakeName {
 public:
  FakeName(std::string name, std::vector<std::string> addresses);
  ~FakeName();
  FakeName(const FakeName&) = delete;
  FakeName& operator=(const FakeName&) = delete;

 private:
  std::string name_;
};

// While alive, ::getaddrinfo(name, service) fails with EAI_SYSTEM and errno `err` (a resolver that ran out
// of descriptors, say).
class FailingName {
 public:
  FailingName(std::string name, int err);
  ~FailingName();
  FailingName(const FailingName&) = delete;
  FailingName& operator=(const FailingName&) = delete;

 private:
  std::string name_;
};

// While alive, ::getaddrinfo(name, ...) for a fake name (FakeName) waits, on the resolver's thread, until
// release() or destruction: a lookup that is still running.
class HeldName {
 public:
  explicit HeldName(std::string name);
  ~HeldName();
  HeldName(const HeldName&) = delete;
  HeldName& operator=(const HeldName&) = delete;
  void release();
  // Lookups of the name waiting here now.
  int waiting() const;
  // Waits (at most `limit`) until a lookup of the name waits here; false if none came.
  bool wait_for_a_lookup(std::chrono::milliseconds limit) const;

 private:
  std::string name_;
};

// While alive (one at a time), records every ::connect of an IPv4/IPv6 socket and makes connects to the
// addresses given to fail() fail at once, as the kernel does when it has no route (a non-blocking connect
// returns -1 with ENETUNREACH or EHOSTUNREACH before sending anything).
class ConnectInterposer {
 public:
  ConnectInterposer();
  ~ConnectInterposer();
  ConnectInterposer(const ConnectInterposer&) = delete;
  ConnectInterposer& operator=(const ConnectInterposer&) = delete;

  // Connects to the numeric address `host` (any port) fail with `err`.
  void fail(const std::string& host, int err);
  // The destinations connected to, "127.0.0.1:80" / "[::1]:80", in call order.
  std::vector<std::string> attempts() const;
};

// While alive, ::listen fails with `err` (on the calling thread's sockets and every other's).
class FailingListen {
 public:
  explicit FailingListen(int err);
  ~FailingListen();
  FailingListen(const FailingListen&) = delete;
  FailingListen& operator=(const FailingListen&) = delete;
};

// While alive, ::pthread_create fails with EAGAIN (as under RLIMIT_NPROC): std::thread throws
// std::system_error, so no pool can start a thread.
class FailingThreads {
 public:
  FailingThreads();
  ~FailingThreads();
  FailingThreads(const FailingThreads&) = delete;
  FailingThreads& operator=(const FailingThreads&) = delete;
};

}  // namespace corio_test
