#include <gtest/gtest.h>

#include <corio/corio.hpp>

namespace {
corio::Task<int> answer() { co_return 42; }
}  // namespace

TEST(Smoke, RunReturnsValue) { EXPECT_EQ(corio::run(answer()), 42); }
