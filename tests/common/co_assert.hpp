// Assertions usable inside coroutines, for every layer's tests. ASSERT_* cannot be used there (it expands
// to `return`): these fail the test and abort the coroutine by throwing instead.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <stdexcept>

// CO_ASSERT(cond): if `cond` is false, fails the test (ADD_FAILURE) and throws std::logic_error.
#define CO_ASSERT(cond)                                   \
  do {                                                    \
    if (!(cond)) {                                        \
      ADD_FAILURE() << "CO_ASSERT failed: " #cond;        \
      throw std::logic_error("CO_ASSERT failed: " #cond); \
    }                                                     \
  } while (0)
// CO_ASSERT_EQ(a, b): CO_ASSERT((a) == (b)).
#define CO_ASSERT_EQ(a, b) CO_ASSERT((a) == (b))
// CO_ASSERT_NE(a, b): CO_ASSERT((a) != (b)).
#define CO_ASSERT_NE(a, b) CO_ASSERT((a) != (b))

// Expects `expr` (possibly a co_await expression) to throw the exception type `Exc` (or a subclass); binds
// the caught exception to `var` for further checks in `body`.
#define CO_EXPECT_THROW_AS(expr, Exc, var, body)                            \
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
