// corio's exception types. Every corio error derives from corio::Error (a std::runtime_error) except
// CancelledError, which derives from nothing in std so that `catch (const std::exception&)` never swallows
// a cancellation (asyncio made CancelledError a BaseException for the same reason).
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace corio {

namespace detail {
// Whether e holds an exception of type E (or derived from it).
template <class E>
bool exception_is(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}
}  // namespace detail

// Base of every corio error but CancelledError.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown at the co_await a task is suspended at when the task is cancelled (TaskHandle::cancel). A task may
// catch it to clean up and should rethrow it. Not a std::exception on purpose.
class CancelledError {
 public:
  CancelledError() = default;
  explicit CancelledError(std::string msg) : msg_(std::move(msg)) {}
  // The message given to cancel(msg); empty when none was.
  const std::string& message() const noexcept { return msg_; }
  const char* what() const noexcept { return msg_.empty() ? "CancelledError" : msg_.c_str(); }

 private:
  std::string msg_;
};

// Thrown into an async generator at the co_yield it is suspended at by AsyncGenerator::aclose(), so that
// the body unwinds (RAII and its own handlers run) and ends. Like CancelledError, not a std::exception, so
// that `catch (const std::exception&)` in the body does not swallow it (asyncio's GeneratorExit is a
// BaseException). A body that catches it must end, not yield again.
class GeneratorExit {
 public:
  const char* what() const noexcept { return "GeneratorExit"; }
};

// wait_for's deadline passed (the inner work was cancelled and has ended).
class TimeoutError : public Error {
 public:
  TimeoutError() : Error("timeout") {}
  using Error::Error;
};

// An operation is not valid in the object's state: result() of a pending task, a Task awaited twice.
class InvalidStateError : public Error {
 public:
  using Error::Error;
};

// Misuse of the runtime: run() inside a running loop, get_running_loop() outside one, releasing an
// unlocked Lock, create_task on a finished TaskGroup.
class RuntimeError : public Error {
 public:
  using Error::Error;
};

// Several failures at once (task_group). exceptions() holds each one: the children's in the order they
// ended, then the body's (as asyncio's TaskGroup).
class ExceptionGroup : public Error {
 public:
  ExceptionGroup(std::string msg, std::vector<std::exception_ptr> excs)
      : Error(describe(msg, excs)), exceptions_(std::move(excs)) {}
  const std::vector<std::exception_ptr>& exceptions() const noexcept { return exceptions_; }

 private:
  static std::string describe(const std::string& msg, const std::vector<std::exception_ptr>& excs);
  std::vector<std::exception_ptr> exceptions_;
};

// EOF arrived before readexactly(n) got n bytes (expected() is n), or before readuntil() found its
// separator (expected() is kUndefined, asyncio's None); partial() holds what did arrive.
class IncompleteReadError : public Error {
 public:
  static constexpr std::size_t kUndefined = static_cast<std::size_t>(-1);
  IncompleteReadError(std::string partial, std::size_t expected)
      : Error("IncompleteReadError: " + std::to_string(partial.size()) + " bytes read on a total of " +
              (expected == kUndefined ? std::string("undefined") : std::to_string(expected)) +
              " expected bytes"),
        partial_(std::move(partial)),
        expected_(expected) {}
  const std::string& partial() const noexcept { return partial_; }
  std::size_t expected() const noexcept { return expected_; }

 private:
  std::string partial_;
  std::size_t expected_;
};

// A line or separator search went past the stream's limit; the data stays in the buffer.
class LimitOverrunError : public Error {
 public:
  LimitOverrunError(std::string msg, std::size_t consumed) : Error(std::move(msg)), consumed_(consumed) {}
  std::size_t consumed() const noexcept { return consumed_; }

 private:
  std::size_t consumed_;
};

class QueueEmpty : public Error {
 public:
  QueueEmpty() : Error("queue is empty") {}
};
class QueueFull : public Error {
 public:
  QueueFull() : Error("queue is full") {}
};
class QueueShutDown : public Error {
 public:
  QueueShutDown() : Error("queue is shut down") {}
};
class BrokenBarrierError : public Error {
 public:
  BrokenBarrierError() : Error("barrier is broken") {}
};

}  // namespace corio
