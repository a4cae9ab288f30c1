// Typed errors of the network layer, after Python's OSError family. Each names what failed (the host and
// port, the path, the operation) and keeps the errno.
#pragma once

#include <string>

#include "corio/core/errors.hpp"

namespace corio {

class OSError : public Error {
 public:
  OSError(int code, const std::string& what);
  // The errno value (or, for GaiError, the EAI_* code).
  int code() const noexcept { return code_; }

 private:
  int code_;
};

class ConnectionError : public OSError {
 public:
  using OSError::OSError;
};
class ConnectionRefusedError : public ConnectionError {
 public:
  using ConnectionError::ConnectionError;
};
class ConnectionResetError : public ConnectionError {
 public:
  using ConnectionError::ConnectionError;
};
class ConnectionAbortedError : public ConnectionError {
 public:
  using ConnectionError::ConnectionError;
};
class BrokenPipeError : public ConnectionError {
 public:
  using ConnectionError::ConnectionError;
};

// Name resolution failed (socket.gaierror): code() is the EAI_* value.
class GaiError : public OSError {
 public:
  // sys_errno: errno when eai_code is EAI_SYSTEM (named in the message: "System error" alone says nothing).
  GaiError(int eai_code, const std::string& host, const std::string& service, int sys_errno = 0);
};

namespace detail {
// Throws the OSError subclass matching `err` with the message "<what>: <strerror>".
[[noreturn]] void throw_os_error(int err, const std::string& what);
std::exception_ptr make_os_error(int err, const std::string& what);
}  // namespace detail

}  // namespace corio
