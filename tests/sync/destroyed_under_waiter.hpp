// A primitive destroyed while a task waits on it, then that task cancelled (or cancelled first and the
// primitive destroyed before the task's step runs): the wait must end with CancelledError and touch nothing
// of the freed primitive (ASan reports it otherwise). The common shape comes last: the primitive is a local
// of the main task, which fails; run() then cancels the task still waiting.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>

#include "corio/core/errors.hpp"
#include "corio/core/run.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"

#include "common/test_util.hpp"

namespace corio_test {

// Prims: the primitive(s), default-constructible, destroyed together. start(Prims&): creates the task that
// waits on them (it has waited after `settle` turns) and returns its handle.
template <class Prims, class Start>
void destroy_under_waiting_task(Start start, int settle) {
  for (bool cancel_first : {false, true}) {
    corio::run(
        [](Start& start, int settle, bool cancel_first) -> corio::Task<> {
          auto p = std::make_unique<Prims>();
          auto a = start(*p);
          co_await turns(settle);  // a waits
          if (cancel_first) a.cancel();
          p.reset();
          if (!cancel_first) a.cancel();
          co_await turns(2);
          EXPECT_TRUE(a.cancelled());
        }(start, settle, cancel_first),
        kVirtual);
  }
  EXPECT_THROW(corio::run(
                   [](Start& start, int settle) -> corio::Task<> {
                     Prims p;
                     auto a = start(p);
                     co_await turns(settle);
                     throw std::runtime_error("main failed");
                   }(start, settle),
                   kVirtual),
               std::runtime_error);
}

// The primitive destroyed after release() handed it to a waiter whose task has not run yet (then cancelled,
// or not): the waiter's acquire ends as handed (it returns; or CancelledError) and touches nothing of the
// freed primitive (ASan reports it otherwise). make() gives the primitive with nothing free to acquire, once
// `hold_first` (a Lock) has been acquired by the test.
template <class Prim, class Make>
void destroy_after_hand_over(Make make, bool hold_first) {
  for (bool cancel : {false, true}) {
    corio::run(
        [](Make& make, bool hold_first, bool cancel) -> corio::Task<> {
          std::unique_ptr<Prim> prim = make();
          if (hold_first) co_await prim->acquire();
          bool got = false;
          auto waiter = corio::create_task([](Prim& p, bool& got) -> corio::Task<> {
            co_await p.acquire();
            got = true;
          }(*prim, got));
          co_await turns(1);  // waiter waits
          prim->release();    // handed over: waiter is scheduled, has not run
          prim.reset();
          if (cancel) waiter.cancel();
          co_await turns(2);
          EXPECT_TRUE(waiter.done());
          EXPECT_EQ(waiter.cancelled(), cancel);
          EXPECT_EQ(got, !cancel);
        }(make, hold_first, cancel),
        kVirtual);
  }
}

}  // namespace corio_test
