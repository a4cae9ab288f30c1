// Helpers shared by the process tests: assertions usable inside coroutines and a hang guard around
// corio::run.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/flow/wait_for.hpp"

// ASSERT_* cannot be used inside a coroutine (it expands to `return`): these fail the test and abort the
// coroutine by throwing instead.
#define PCO_ASSERT(cond)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      ADD_FAILURE() << "PCO_ASSERT failed: " #cond;        \
      throw std::logic_error("PCO_ASSERT failed: " #cond); \
    }                                                      \
  } while (0)

// Expects `expr` (possibly a co_await expression) to throw `Exc` (or a subclass), bound to `var` in `body`.
#define PCO_EXPECT_THROW_AS(expr, Exc, var, body)                           \
  do {                                                                      \
    bool threw_ = false;                                                    \
    try {                                                                   \
      (void)(expr);                                                         \
    } catch (const Exc& var) {                                              \
      threw_ = true;                                                        \
      body;                                                                 \
    } catch (const std::exception& other_) {                                \
      ADD_FAILURE() << #expr " threw another exception: " << other_.what(); \
      threw_ = true;                                                        \
    }                                                                       \
    if (!threw_) ADD_FAILURE() << #expr " did not throw " #Exc;             \
  } while (0)

namespace corio_proc_test {

using namespace std::chrono_literals;

// Every test body runs under this guard: a hang becomes a TimeoutError (a failure), never a stuck binary.
inline constexpr auto kHangGuard = 10s;

template <class T>
T run_guarded(corio::Task<T> body, std::chrono::nanoseconds guard = kHangGuard) {
  return corio::run(corio::wait_for(std::move(body), guard));
}

inline std::vector<std::string> sh(std::string script) { return {"/bin/sh", "-c", std::move(script)}; }

}  // namespace corio_proc_test
