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

#include "common/co_assert.hpp"

// The process tests' names for them.
#define PCO_ASSERT(cond) CO_ASSERT(cond)
#define PCO_EXPECT_THROW_AS(expr, Exc, var, body) CO_EXPECT_THROW_AS(expr, Exc, var, body)

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
