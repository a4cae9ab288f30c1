// Queue, PriorityQueue, LifoQueue: order, bounds, nowait errors, task_done/join, shutdown, cancellation,
// move-only items.
#include "corio/sync/queue.hpp"
#include "corio/sync/event.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/wait_for.hpp"

#include "common/test_util.hpp"

using namespace std::chrono_literals;
using corio_test::iota;
using corio_test::kVirtual;
using corio_test::Log;
using corio_test::now;
using corio_test::parked;
using corio_test::run_then_drop_loop;
using corio_test::turns;

namespace {

template <class Q>
corio::Task<> getter(Q& q, std::vector<std::string>& log, std::string name) {
  try {
    auto v = co_await q.get();
    log.push_back(name + ":" + std::to_string(v));
  } catch (const corio::CancelledError&) {
    log.push_back(name + ":cancelled");
    throw;
  } catch (const corio::QueueShutDown&) {
    log.push_back(name + ":shutdown");
  }
}

template <class Q>
corio::Task<> putter(Q& q, std::vector<std::string>& log, std::string name, int v) {
  try {
    co_await q.put(v);
    log.push_back(name + "<" + std::to_string(v));
  } catch (const corio::CancelledError&) {
    log.push_back(name + ":cancelled");
    throw;
  } catch (const corio::QueueShutDown&) {
    log.push_back(name + ":shutdown");
  }
}

TEST(Queue, FifoOrder) {
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<int> q;
        EXPECT_TRUE(q.empty());
        EXPECT_EQ(q.maxsize(), 0u);
        for (int i : {3, 1, 4, 1, 5}) co_await q.put(i);
        q.put_nowait(9);
        EXPECT_EQ(q.size(), 6u);
        EXPECT_FALSE(q.full());  // unbounded
        std::vector<int> out;
        while (!q.empty()) out.push_back(co_await q.get());
        EXPECT_EQ(out, (std::vector<int>{3, 1, 4, 1, 5, 9}));
      }(),
      kVirtual);
}

TEST(Queue, NowaitErrors) {
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<int> q(2);
        EXPECT_THROW(q.get_nowait(), corio::QueueEmpty);
        q.put_nowait(1);
        q.put_nowait(2);
        EXPECT_TRUE(q.full());
        EXPECT_THROW(q.put_nowait(3), corio::QueueFull);
        EXPECT_EQ(q.size(), 2u);
        EXPECT_EQ(q.get_nowait(), 1);
        EXPECT_EQ(q.get_nowait(), 2);
        EXPECT_THROW(q.get_nowait(), corio::QueueEmpty);
        co_return;
      }(),
      kVirtual);
}

TEST(Queue, GetWaitsForPutInFifoOrderOfGetters) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Queue<int> q;
        auto a = corio::create_task(getter(q, log, "a"));
        auto b = corio::create_task(getter(q, log, "b"));
        co_await turns(2);
        EXPECT_FALSE(a.done());
        q.put_nowait(10);
        q.put_nowait(20);
        co_await a;
        co_await b;
        EXPECT_TRUE(q.empty());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:10", "b:20"}));
}

TEST(Queue, MaxsizeBlocksPutUntilGet) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Queue<int> q(1);
        co_await q.put(1);
        auto p2 = corio::create_task(putter(q, log, "p2", 2));
        auto p3 = corio::create_task(putter(q, log, "p3", 3));
        co_await turns(2);
        EXPECT_FALSE(p2.done());
        EXPECT_FALSE(p3.done());
        EXPECT_EQ(q.size(), 1u);
        EXPECT_EQ(co_await q.get(), 1);
        co_await turns(1);
        EXPECT_TRUE(p2.done());
        EXPECT_FALSE(p3.done());
        EXPECT_EQ(co_await q.get(), 2);
        co_await p3;
        EXPECT_EQ(co_await q.get(), 3);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"p2<2", "p3<3"}));
}

TEST(PriorityQueue, SmallestFirst) {
  corio::run(
      []() -> corio::Task<> {
        corio::PriorityQueue<int> q;
        for (int i : {5, 1, 4, 2, 3, 1}) co_await q.put(i);
        std::vector<int> out;
        while (!q.empty()) out.push_back(co_await q.get());
        EXPECT_EQ(out, (std::vector<int>{1, 1, 2, 3, 4, 5}));
        // Interleaved puts and gets.
        q.put_nowait(7);
        q.put_nowait(3);
        EXPECT_EQ(q.get_nowait(), 3);
        q.put_nowait(1);
        EXPECT_EQ(q.get_nowait(), 1);
        EXPECT_EQ(q.get_nowait(), 7);
      }(),
      kVirtual);
}

TEST(PriorityQueue, CustomCompare) {
  corio::run(
      []() -> corio::Task<> {
        // Under std::greater the "smallest" is the largest number.
        corio::PriorityQueue<int, std::greater<int>> q;
        for (int i : {5, 1, 4, 2, 3}) co_await q.put(i);
        std::vector<int> out;
        while (!q.empty()) out.push_back(co_await q.get());
        EXPECT_EQ(out, (std::vector<int>{5, 4, 3, 2, 1}));
        // Pairs (priority, payload) ordered by priority only.
        struct ByFirst {
          bool operator()(const std::pair<int, std::string>& a, const std::pair<int, std::string>& b) const {
            return a.first < b.first;
          }
        };
        corio::PriorityQueue<std::pair<int, std::string>, ByFirst> pq;
        pq.put_nowait({3, "c"});
        pq.put_nowait({1, "a"});
        pq.put_nowait({2, "b"});
        EXPECT_EQ((co_await pq.get()).second, "a");
        EXPECT_EQ((co_await pq.get()).second, "b");
        EXPECT_EQ((co_await pq.get()).second, "c");
      }(),
      kVirtual);
}

TEST(LifoQueue, LastInFirstOut) {
  corio::run(
      []() -> corio::Task<> {
        corio::LifoQueue<int> q(3);
        for (int i : {1, 2, 3}) co_await q.put(i);
        EXPECT_THROW(q.put_nowait(4), corio::QueueFull);
        std::vector<int> out;
        while (!q.empty()) out.push_back(co_await q.get());
        EXPECT_EQ(out, (std::vector<int>{3, 2, 1}));
        EXPECT_THROW(q.get_nowait(), corio::QueueEmpty);
      }(),
      kVirtual);
}

TEST(Queue, TaskDoneTooOftenThrows) {
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<int> q;
        EXPECT_THROW(q.task_done(), corio::Error);
        q.put_nowait(1);
        (void)co_await q.get();
        q.task_done();
        EXPECT_THROW(q.task_done(), corio::Error);
      }(),
      kVirtual);
}

TEST(Queue, JoinWaitsForEveryTaskDone) {
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<int> q;
        co_await q.join();  // nothing unfinished: returns at once
        for (int i = 0; i < 3; ++i) q.put_nowait(i);
        bool joined = false;
        auto j = corio::create_task([](corio::Queue<int>& q, bool& joined) -> corio::Task<> {
          co_await q.join();
          joined = true;
        }(q, joined));
        co_await turns(2);
        EXPECT_FALSE(joined);
        for (int i = 0; i < 3; ++i) (void)q.get_nowait();
        co_await turns(2);
        EXPECT_FALSE(joined);  // taken is not done
        q.task_done();
        q.task_done();
        co_await turns(2);
        EXPECT_FALSE(joined);
        q.task_done();
        co_await j;
        EXPECT_TRUE(joined);
      }(),
      kVirtual);
}

TEST(Queue, JoinCancelled) {
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<int> q;
        q.put_nowait(1);
        auto j = corio::create_task([](corio::Queue<int>& q) -> corio::Task<> { co_await q.join(); }(q));
        co_await turns(1);
        j.cancel();
        co_await turns(1);
        EXPECT_TRUE(j.cancelled());
        (void)q.get_nowait();
        q.task_done();
        co_await q.join();
      }(),
      kVirtual);
}

TEST(Queue, ProducerConsumerWithJoin) {
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<int> q(2);
        std::vector<int> consumed;
        auto consumer =
            corio::create_task([](corio::Queue<int>& q, std::vector<int>& consumed) -> corio::Task<> {
              for (;;) {
                int v = co_await q.get();
                co_await corio::sleep(0s);
                consumed.push_back(v);
                q.task_done();
              }
            }(q, consumed));
        for (int i = 0; i < 20; ++i) co_await q.put(i);
        co_await q.join();
        EXPECT_EQ(consumed.size(), 20u);
        for (int i = 0; i < 20; ++i) EXPECT_EQ(consumed[i], i);
        consumer.cancel();
        co_await turns(1);
        EXPECT_TRUE(consumer.cancelled());
      }(),
      kVirtual);
}

TEST(Queue, CancelledGetterWhileWaiting) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Queue<int> q;
        auto a = corio::create_task(getter(q, log, "a"));
        auto b = corio::create_task(getter(q, log, "b"));
        co_await turns(1);
        a.cancel();
        co_await turns(1);
        EXPECT_TRUE(a.cancelled());
        q.put_nowait(7);
        co_await b;
        EXPECT_TRUE(q.empty());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled", "b:7"}));
}

TEST(Queue, GetterWokenThenCancelledPassesTheItemOn) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Queue<int> q;
        auto a = corio::create_task(getter(q, log, "a"));
        auto b = corio::create_task(getter(q, log, "b"));
        co_await turns(1);
        q.put_nowait(7);  // wakes a
        a.cancel();       // before a runs: b must be woken for the item
        co_await turns(3);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(b.done());
        EXPECT_EQ(q.size(), 0u);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled", "b:7"}));
}

TEST(Queue, PutterWokenThenCancelledPassesTheSlotOn) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Queue<int> q(1);
        q.put_nowait(0);
        auto a = corio::create_task(putter(q, log, "a", 1));
        auto b = corio::create_task(putter(q, log, "b", 2));
        co_await turns(1);
        EXPECT_EQ(q.get_nowait(), 0);  // wakes a
        a.cancel();
        co_await turns(3);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(b.done());
        EXPECT_EQ(q.get_nowait(), 2);
        // Cancelled while waiting, without a wake-up.
        q.put_nowait(5);
        auto c = corio::create_task(putter(q, log, "c", 3));
        co_await turns(1);
        c.cancel();
        co_await turns(1);
        EXPECT_TRUE(c.cancelled());
        EXPECT_EQ(q.size(), 1u);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"a:cancelled", "b<2", "c:cancelled"}));
}

TEST(Queue, ShutdownWakesEveryGetterAndPutter) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Queue<int> empty_q;
        auto g1 = corio::create_task(getter(empty_q, log, "g1"));
        auto g2 = corio::create_task(getter(empty_q, log, "g2"));
        corio::Queue<int> full_q(1);
        full_q.put_nowait(0);
        auto p1 = corio::create_task(putter(full_q, log, "p1", 1));
        auto p2 = corio::create_task(putter(full_q, log, "p2", 2));
        co_await turns(1);
        empty_q.shutdown();
        full_q.shutdown();
        EXPECT_TRUE(empty_q.is_shut_down());
        co_await g1;
        co_await g2;
        co_await p1;
        co_await p2;
        // Later operations: put throws; get drains what is left, then throws.
        EXPECT_THROW(full_q.put_nowait(3), corio::QueueShutDown);
        EXPECT_EQ(full_q.get_nowait(), 0);
        EXPECT_THROW(full_q.get_nowait(), corio::QueueShutDown);
        bool threw = false;
        try {
          co_await empty_q.put(1);
        } catch (const corio::QueueShutDown&) {
          threw = true;
        }
        EXPECT_TRUE(threw);
        threw = false;
        try {
          (void)co_await empty_q.get();
        } catch (const corio::QueueShutDown&) {
          threw = true;
        }
        EXPECT_TRUE(threw);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"g1:shutdown", "g2:shutdown", "p1:shutdown", "p2:shutdown"}));
}

TEST(Queue, ShutdownKeepsItemsForGetAndJoin) {
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<int> q;
        q.put_nowait(1);
        q.put_nowait(2);
        q.shutdown();
        EXPECT_EQ(co_await q.get(), 1);
        q.task_done();
        auto j = corio::create_task([](corio::Queue<int>& q) -> corio::Task<> { co_await q.join(); }(q));
        co_await turns(2);
        EXPECT_FALSE(j.done());
        EXPECT_EQ(co_await q.get(), 2);
        q.task_done();
        co_await j;
      }(),
      kVirtual);
}

TEST(Queue, ShutdownImmediateDropsItemsAndSettlesJoin) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Queue<int> q(2);
        q.put_nowait(1);
        q.put_nowait(2);
        auto p = corio::create_task(putter(q, log, "p", 3));
        auto j = corio::create_task([](corio::Queue<int>& q) -> corio::Task<> { co_await q.join(); }(q));
        co_await turns(1);
        // One item taken and in progress: join settles once it is done.
        EXPECT_EQ(q.get_nowait(), 1);
        co_await turns(1);  // p is woken, and puts 3 on this turn
        EXPECT_TRUE(p.done());
        EXPECT_EQ(q.size(), 2u);
        q.shutdown(true);
        EXPECT_TRUE(q.empty());
        co_await turns(2);
        EXPECT_FALSE(j.done());
        q.task_done();  // the one taken
        co_await j;
        EXPECT_THROW(q.task_done(), corio::Error);
        bool threw = false;
        try {
          (void)co_await q.get();
        } catch (const corio::QueueShutDown&) {
          threw = true;
        }
        EXPECT_TRUE(threw);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"p<3"}));
}

TEST(Queue, ShutdownImmediateWakesGettersAndJoiners) {
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        corio::Queue<int> q;
        auto g = corio::create_task(getter(q, log, "g"));
        co_await turns(1);
        q.put_nowait(1);  // wakes g (it has not run yet)
        q.put_nowait(2);
        auto j = corio::create_task([](corio::Queue<int>& q) -> corio::Task<> { co_await q.join(); }(q));
        q.shutdown(true);  // drops both
        co_await j;
        co_await g;
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"g:shutdown"}));
}

TEST(Queue, MoveOnlyItems) {
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<std::unique_ptr<int>> q(1);
        co_await q.put(std::make_unique<int>(1));
        auto p = corio::create_task([](corio::Queue<std::unique_ptr<int>>& q) -> corio::Task<> {
          co_await q.put(std::make_unique<int>(2));
        }(q));
        co_await turns(1);
        EXPECT_FALSE(p.done());
        std::unique_ptr<int> a = co_await q.get();
        EXPECT_TRUE(a);
        if (!a) co_return;
        EXPECT_EQ(*a, 1);
        co_await p;
        std::unique_ptr<int> b = q.get_nowait();
        EXPECT_TRUE(b);
        if (!b) co_return;
        EXPECT_EQ(*b, 2);
        q.put_nowait(nullptr);
        EXPECT_THROW(q.put_nowait(std::make_unique<int>(3)), corio::QueueFull);
        EXPECT_EQ(co_await q.get(), nullptr);
      }(),
      kVirtual);
}

TEST(Queue, MoveOnlyItemsInPriorityAndLifoQueues) {
  corio::run(
      []() -> corio::Task<> {
        struct Less {
          bool operator()(const std::unique_ptr<int>& a, const std::unique_ptr<int>& b) const {
            return *a < *b;
          }
        };
        corio::PriorityQueue<std::unique_ptr<int>, Less> pq;
        for (int i : {3, 1, 2}) co_await pq.put(std::make_unique<int>(i));
        EXPECT_EQ(*co_await pq.get(), 1);
        EXPECT_EQ(*co_await pq.get(), 2);
        EXPECT_EQ(*co_await pq.get(), 3);
        corio::LifoQueue<std::unique_ptr<int>> lq;
        for (int i : {1, 2}) lq.put_nowait(std::make_unique<int>(i));
        EXPECT_EQ(*co_await lq.get(), 2);
        EXPECT_EQ(*co_await lq.get(), 1);
      }(),
      kVirtual);
}

TEST(Queue, TenThousandGettersServedInOrder) {
  static constexpr int kN = 10'000;
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<int> q;
        std::vector<int> got(kN, -1);
        std::vector<corio::TaskHandle<>> hs;
        hs.reserve(kN);
        for (int i = 0; i < kN; ++i)
          hs.push_back(
              corio::create_task([](corio::Queue<int>& q, std::vector<int>& got, int i) -> corio::Task<> {
                got[i] = co_await q.get();
              }(q, got, i)));
        co_await turns(1);
        for (int i = 0; i < kN; ++i) q.put_nowait(i);
        for (auto& h : hs) co_await h;
        EXPECT_EQ(got, iota(kN));
        EXPECT_TRUE(q.empty());
      }(),
      kVirtual);
}

TEST(Queue, TenThousandPuttersServedInOrder) {
  static constexpr int kN = 10'000;
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<int> q(1);
        q.put_nowait(-1);
        std::vector<corio::TaskHandle<>> hs;
        hs.reserve(kN);
        for (int i = 0; i < kN; ++i)
          hs.push_back(corio::create_task(
              [](corio::Queue<int>& q, int i) -> corio::Task<> { co_await q.put(i); }(q, i)));
        co_await turns(1);
        EXPECT_EQ(co_await q.get(), -1);
        std::vector<int> got;
        for (int i = 0; i < kN; ++i) got.push_back(co_await q.get());
        EXPECT_EQ(got, iota(kN));
        for (auto& h : hs) co_await h;
        EXPECT_TRUE(q.empty());
      }(),
      kVirtual);
}

// ---------------------------------------------------------------- every queue kind

template <class Q>
class QueueKinds : public ::testing::Test {};
using Kinds = ::testing::Types<corio::Queue<int>, corio::PriorityQueue<int>, corio::LifoQueue<int>>;
struct KindName {
  template <class Q>
  static std::string GetName(int) {
    if constexpr (std::is_same_v<Q, corio::Queue<int>>) return "Fifo";
    if constexpr (std::is_same_v<Q, corio::PriorityQueue<int>>) return "Priority";
    return "Lifo";
  }
};
TYPED_TEST_SUITE(QueueKinds, Kinds, KindName);

// The order in which a queue of kind Q gives back items put in `put_order` (nothing taken in between).
template <class Q>
std::vector<int> drain_order(std::vector<int> put_order) {
  if constexpr (std::is_same_v<Q, corio::PriorityQueue<int>>) std::sort(put_order.begin(), put_order.end());
  if constexpr (std::is_same_v<Q, corio::LifoQueue<int>>) std::reverse(put_order.begin(), put_order.end());
  return put_order;
}

template <class Q>
std::vector<int> drain(Q& q) {
  std::vector<int> out;
  while (!q.empty()) out.push_back(q.get_nowait());
  return out;
}

TYPED_TEST(QueueKinds, DrainOrderModel) {
  using Q = TypeParam;
  Q q;
  for (int i : {5, 3, 9, 1}) q.put_nowait(i);
  EXPECT_EQ(drain(q), drain_order<Q>({5, 3, 9, 1}));
}

TYPED_TEST(QueueKinds, GetterCancelledWhileWaitingTakesNothing) {
  using Q = TypeParam;
  Log log;
  corio::run(
      [](Log& log) -> corio::Task<> {
        Q q;
        auto a = corio::create_task(getter(q, log, "a"));
        auto b = corio::create_task(getter(q, log, "b"));
        co_await turns(1);
        a.cancel();
        co_await turns(1);
        EXPECT_TRUE(a.cancelled());
        q.put_nowait(7);  // to b: a left the queue of getters
        EXPECT_EQ(q.size(), 0u);
        co_await b;
        q.put_nowait(8);  // nobody waits any more: it stays
        EXPECT_EQ(q.size(), 1u);
      }(log),
      kVirtual);
  EXPECT_EQ(log, (Log{"a:cancelled", "b:7"}));
}

TYPED_TEST(QueueKinds, GetterWokenThenCancelledPassesTheItemOn) {
  using Q = TypeParam;
  Log log;
  corio::run(
      [](Log& log) -> corio::Task<> {
        Q q;
        auto a = corio::create_task(getter(q, log, "a"));
        auto b = corio::create_task(getter(q, log, "b"));
        auto c = corio::create_task(getter(q, log, "c"));
        co_await turns(1);
        q.put_nowait(7);  // handed to a
        a.cancel();       // before a runs: 7 must reach b, and c keeps waiting
        co_await turns(3);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(b.done());
        EXPECT_FALSE(c.done());
        EXPECT_EQ(q.size(), 0u);
        q.put_nowait(8);
        co_await c;
      }(log),
      kVirtual);
  EXPECT_EQ(log, (Log{"a:cancelled", "b:7", "c:8"}));
}

// Waiting gets are served in the order they started waiting, each handed the next item put — in put order
// for every kind: an item put while gets wait goes straight to the longest-waiting one (queue.hpp).
TYPED_TEST(QueueKinds, WaitingGettersServedInFifoOrder) {
  using Q = TypeParam;
  Log log;
  corio::run(
      [](Log& log) -> corio::Task<> {
        Q q;
        std::vector<corio::TaskHandle<>> hs;
        for (const char* n : {"a", "b", "c", "d"}) {
          hs.push_back(corio::create_task(getter(q, log, n)));
          co_await turns(1);  // each starts waiting on its own turn
        }
        for (int v : {30, 10, 40, 20}) q.put_nowait(v);
        EXPECT_EQ(q.size(), 0u);
        EXPECT_THROW(q.get_nowait(), corio::QueueEmpty);  // handed over: nothing for a newcomer
        for (auto& h : hs) co_await h;
      }(log),
      kVirtual);
  EXPECT_EQ(log, (Log{"a:30", "b:10", "c:40", "d:20"}));
}

TYPED_TEST(QueueKinds, PutterCancelledWhileWaitingPutsNothing) {
  using Q = TypeParam;
  Log log;
  corio::run(
      [](Log& log) -> corio::Task<> {
        Q q(1);
        q.put_nowait(0);
        auto a = corio::create_task(putter(q, log, "a", 1));
        auto b = corio::create_task(putter(q, log, "b", 2));
        co_await turns(1);
        a.cancel();
        co_await turns(1);
        EXPECT_TRUE(a.cancelled());
        EXPECT_EQ(q.size(), 1u);
        EXPECT_EQ(q.get_nowait(), 0);  // the slot goes to b
        co_await b;
        EXPECT_EQ(drain(q), (std::vector<int>{2}));
      }(log),
      kVirtual);
  EXPECT_EQ(log, (Log{"a:cancelled", "b<2"}));
}

TYPED_TEST(QueueKinds, PutterWokenThenCancelledPassesTheSlotOn) {
  using Q = TypeParam;
  Log log;
  corio::run(
      [](Log& log) -> corio::Task<> {
        Q q(1);
        q.put_nowait(0);
        auto a = corio::create_task(putter(q, log, "a", 1));
        auto b = corio::create_task(putter(q, log, "b", 2));
        auto c = corio::create_task(putter(q, log, "c", 3));
        co_await turns(1);
        EXPECT_EQ(q.get_nowait(), 0);  // reserves the slot for a
        EXPECT_TRUE(q.full());
        a.cancel();  // before a runs: the slot must reach b, not be lost
        co_await turns(3);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(b.done());
        EXPECT_FALSE(c.done());
        EXPECT_EQ(q.get_nowait(), 2);
        co_await c;
        EXPECT_EQ(drain(q), (std::vector<int>{3}));
      }(log),
      kVirtual);
  EXPECT_EQ(log, (Log{"a:cancelled", "b<2", "c<3"}));
}

// Waiting puts are served in the order they started waiting (maxsize 1, so the kind cannot reorder).
TYPED_TEST(QueueKinds, WaitingPuttersServedInFifoOrder) {
  using Q = TypeParam;
  Log log;
  corio::run(
      [](Log& log) -> corio::Task<> {
        Q q(1);
        q.put_nowait(100);
        std::vector<corio::TaskHandle<>> hs;
        int i = 0;
        for (int v : {30, 10, 40, 20}) {
          hs.push_back(corio::create_task(putter(q, log, std::string(1, static_cast<char>('a' + i++)), v)));
          co_await turns(1);
        }
        std::vector<int> got;
        for (int k = 0; k < 5; ++k) got.push_back(co_await q.get());
        EXPECT_EQ(got, (std::vector<int>{100, 30, 10, 40, 20}));
        for (auto& h : hs) co_await h;
      }(log),
      kVirtual);
  EXPECT_EQ(log, (Log{"a<30", "b<10", "c<40", "d<20"}));
}

TYPED_TEST(QueueKinds, TenThousandGettersServedInOrder) {
  using Q = TypeParam;
  static constexpr int kN = 10'000;
  corio::run(
      []() -> corio::Task<> {
        Q q;
        std::vector<int> got(kN, -1);
        std::vector<int> order;  // which getter finished when
        order.reserve(kN);
        std::vector<corio::TaskHandle<>> hs;
        hs.reserve(kN);
        for (int i = 0; i < kN; ++i)
          hs.push_back(corio::create_task(
              [](Q& q, std::vector<int>& got, std::vector<int>& order, int i) -> corio::Task<> {
                got[i] = co_await q.get();
                order.push_back(i);
              }(q, got, order, i)));
        co_await turns(1);
        // Descending values, so a PriorityQueue or LifoQueue that let its order decide would show it.
        for (int i = 0; i < kN; ++i) q.put_nowait(kN - 1 - i);
        EXPECT_EQ(q.size(), 0u);
        for (auto& h : hs) co_await h;
        for (int i = 0; i < kN; ++i) got[i] = kN - 1 - got[i];
        EXPECT_EQ(got, iota(kN));
        EXPECT_EQ(order, iota(kN));
        EXPECT_TRUE(q.empty());
      }(),
      kVirtual);
}

TYPED_TEST(QueueKinds, TenThousandPuttersServedInOrder) {
  using Q = TypeParam;
  static constexpr int kN = 10'000;
  corio::run(
      []() -> corio::Task<> {
        Q q(1);
        q.put_nowait(kN);
        std::vector<corio::TaskHandle<>> hs;
        hs.reserve(kN);
        for (int i = 0; i < kN; ++i)
          hs.push_back(
              corio::create_task([](Q& q, int v) -> corio::Task<> { co_await q.put(v); }(q, kN - 1 - i)));
        co_await turns(1);
        EXPECT_EQ(co_await q.get(), kN);
        std::vector<int> got;
        got.reserve(kN);
        for (int i = 0; i < kN; ++i) got.push_back(kN - 1 - co_await q.get());
        EXPECT_EQ(got, iota(kN));
        for (auto& h : hs) co_await h;
        EXPECT_TRUE(q.empty());
      }(),
      kVirtual);
}

// A get handed an item, then cancelled before it runs, with no other get waiting: the item goes back into
// the queue where it would be had it never left (asyncio keeps it there all along).
TYPED_TEST(QueueKinds, HandedItemOfACancelledGetterGoesBackIntoTheQueue) {
  using Q = TypeParam;
  corio::run(
      []() -> corio::Task<> {
        Q q;
        Log log;
        auto a = corio::create_task(getter(q, log, "a"));
        co_await turns(1);
        q.put_nowait(5);  // handed to a
        EXPECT_EQ(q.size(), 0u);
        q.put_nowait(3);
        q.put_nowait(9);
        a.cancel();
        co_await turns(1);
        EXPECT_TRUE(a.cancelled());
        EXPECT_EQ(q.size(), 3u);
        EXPECT_EQ(drain(q), drain_order<Q>({5, 3, 9}));
        EXPECT_EQ(log, (Log{"a:cancelled"}));
        // Its unfinished count is kept: the item still needs a task_done().
        for (int i = 0; i < 3; ++i) q.task_done();
        EXPECT_THROW(q.task_done(), corio::Error);
      }(),
      kVirtual);
}

// Two gets handed items, both cancelled: the items come back in the order they were put (the first
// returned must not end up behind the second in a Queue, nor above it in a LifoQueue).
TYPED_TEST(QueueKinds, HandedItemsOfSeveralCancelledGettersKeepTheirOrder) {
  using Q = TypeParam;
  corio::run(
      []() -> corio::Task<> {
        Q q;
        Log log;
        auto a = corio::create_task(getter(q, log, "a"));
        auto b = corio::create_task(getter(q, log, "b"));
        co_await turns(1);
        q.put_nowait(5);  // to a
        q.put_nowait(3);  // to b
        q.put_nowait(9);
        q.put_nowait(1);
        a.cancel();
        b.cancel();
        co_await turns(1);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(b.cancelled());
        EXPECT_EQ(drain(q), drain_order<Q>({5, 3, 9, 1}));
        // Interleaved with a get: one returned item can be taken before the next comes back. The tasks run
        // in the order they were scheduled: c (returns 6), x (takes one), d (returns 2).
        auto c = corio::create_task(getter(q, log, "c"));
        auto d = corio::create_task(getter(q, log, "d"));
        co_await turns(1);
        q.put_nowait(6);  // to c
        int first = -1;
        auto x = corio::create_task([](Q& q, int& first) -> corio::Task<> {
          first = q.get_nowait();
          co_return;
        }(q, first));
        q.put_nowait(2);  // to d
        q.put_nowait(8);
        c.cancel();
        d.cancel();
        co_await turns(1);
        EXPECT_TRUE(c.cancelled());
        EXPECT_TRUE(d.cancelled());
        EXPECT_TRUE(x.done());
        std::vector<int> all{first};
        for (int v : drain(q)) all.push_back(v);
        // x could take 6 (returned) or 8, not 2 (still handed to d); the rest then comes out as if it had
        // sat in the queue since it was put.
        std::vector<int> expect = drain_order<Q>({6, 8});
        const int expect_first = expect.front();
        EXPECT_EQ(first, expect_first);
        std::vector<int> rest{6, 2, 8};
        rest.erase(std::find(rest.begin(), rest.end(), expect_first));
        std::vector<int> expect_all{expect_first};
        for (int v : drain_order<Q>(rest)) expect_all.push_back(v);
        EXPECT_EQ(all, expect_all);
      }(),
      kVirtual);
}

// A returned item may take the queue above maxsize (documented in queue.hpp): full() holds puts back until
// size() is below maxsize again, and no item is lost.
TYPED_TEST(QueueKinds, ReturnedItemMayExceedMaxsizeAndHoldsPutsBack) {
  using Q = TypeParam;
  corio::run(
      []() -> corio::Task<> {
        Q q(1);
        Log log;
        auto a = corio::create_task(getter(q, log, "a"));
        co_await turns(1);
        q.put_nowait(5);  // to a; the queue stays empty
        q.put_nowait(3);  // fills it
        EXPECT_TRUE(q.full());
        a.cancel();
        co_await turns(1);
        EXPECT_TRUE(a.cancelled());
        EXPECT_EQ(q.size(), 2u);  // above maxsize by the one returned item
        EXPECT_TRUE(q.full());
        EXPECT_THROW(q.put_nowait(7), corio::QueueFull);
        auto p = corio::create_task(putter(q, log, "p", 7));
        co_await turns(2);
        EXPECT_FALSE(p.done());
        const int first = q.get_nowait();  // size 1: still full
        EXPECT_TRUE(q.full());
        co_await turns(2);
        EXPECT_FALSE(p.done());
        const int second = q.get_nowait();  // below maxsize: the slot goes to p
        co_await p;
        EXPECT_EQ((std::vector<int>{first, second}), drain_order<Q>({5, 3}));
        EXPECT_EQ(drain(q), (std::vector<int>{7}));
        EXPECT_EQ(log, (Log{"a:cancelled", "p<7"}));
      }(),
      kVirtual);
}

// ---------------------------------------------------------------- join

TEST(Queue, JoinerWokenThenCancelledBeforeRunning) {
  Log log;
  corio::run(
      [](Log& log) -> corio::Task<> {
        corio::Queue<int> q;
        q.put_nowait(1);
        auto joiner = [](corio::Queue<int>& q, Log& log, std::string name) -> corio::Task<> {
          try {
            co_await q.join();
          } catch (const corio::CancelledError&) {
            log.push_back(name + ":cancelled");
            throw;
          }
          log.push_back(name + ":joined");
        };
        auto j1 = corio::create_task(joiner(q, log, "j1"));
        auto j2 = corio::create_task(joiner(q, log, "j2"));
        co_await turns(1);
        (void)q.get_nowait();
        q.task_done();  // wakes both
        j1.cancel();    // before j1 runs
        co_await turns(2);
        EXPECT_TRUE(j1.cancelled());
        EXPECT_TRUE(j2.done());
        EXPECT_FALSE(j2.cancelled());
        // The queue still joins: no joiner left behind in its list.
        q.put_nowait(2);
        auto j3 = corio::create_task(joiner(q, log, "j3"));
        co_await turns(2);
        EXPECT_FALSE(j3.done());
        (void)q.get_nowait();
        q.task_done();
        co_await j3;
        co_await q.join();
      }(log),
      kVirtual);
  EXPECT_EQ(log, (Log{"j1:cancelled", "j2:joined", "j3:joined"}));
}

TEST(Queue, SeveralJoinersAllReleasedByTheLastTaskDone) {
  Log log;
  corio::run(
      [](Log& log) -> corio::Task<> {
        corio::Queue<int> q;
        q.put_nowait(1);
        q.put_nowait(2);
        std::vector<corio::TaskHandle<>> hs;
        for (const char* n : {"a", "b", "c", "d", "e"})
          hs.push_back(corio::create_task([](corio::Queue<int>& q, Log& log, std::string n) -> corio::Task<> {
            co_await q.join();
            log.push_back(n);
          }(q, log, n)));
        co_await turns(1);
        (void)q.get_nowait();
        (void)q.get_nowait();
        q.task_done();
        co_await turns(2);
        for (auto& h : hs) EXPECT_FALSE(h.done());
        q.task_done();
        co_await turns(1);
        for (auto& h : hs) EXPECT_TRUE(h.done());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (Log{"a", "b", "c", "d", "e"}));
}

TEST(Queue, TenThousandJoiners) {
  static constexpr int kN = 10'000;
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<int> q;
        q.put_nowait(1);
        std::vector<int> order;
        order.reserve(kN);
        std::vector<corio::TaskHandle<>> hs;
        hs.reserve(kN);
        for (int i = 0; i < kN; ++i)
          hs.push_back(
              corio::create_task([](corio::Queue<int>& q, std::vector<int>& order, int i) -> corio::Task<> {
                co_await q.join();
                order.push_back(i);
              }(q, order, i)));
        co_await turns(2);
        EXPECT_TRUE(order.empty());
        (void)q.get_nowait();
        q.task_done();
        co_await turns(1);
        EXPECT_EQ(order, iota(kN));
        for (auto& h : hs) co_await h;
      }(),
      kVirtual);
}

// ---------------------------------------------------------------- waiters destroyed while parked

// Getters, putters and joiners whose frames are destroyed while parked (their loop dropped) unlink
// themselves: later puts, gets and task_done() deal with live waiters only.
TEST(Queue, GettersDestroyedWhileParkedLeaveNoTrace) {
  corio::Queue<int> q;
  Log log;
  int destroyed = 0;
  run_then_drop_loop([&]() -> corio::Task<> {
    for (int i = 0; i < 3; ++i) (void)corio::create_task(parked(q.get(), log, destroyed));
    co_await turns(1);
  });
  EXPECT_EQ(destroyed, 3);
  EXPECT_TRUE(log.empty());
  corio::run(
      [](corio::Queue<int>& q, Log& log) -> corio::Task<> {
        q.put_nowait(1);
        EXPECT_EQ(q.size(), 1u);  // kept: no (dead) getter was handed it
        EXPECT_EQ(q.get_nowait(), 1);
        auto b = corio::create_task(getter(q, log, "b"));
        co_await turns(1);
        q.put_nowait(2);  // to b
        EXPECT_EQ(q.size(), 0u);
        co_await turns(1);
        EXPECT_TRUE(b.done());
      }(q, log),
      kVirtual);
  EXPECT_EQ(log, (Log{"b:2"}));
}

TEST(Queue, PuttersDestroyedWhileParkedLeaveNoTrace) {
  corio::Queue<int> q(1);
  Log log;
  int destroyed = 0;
  run_then_drop_loop([&]() -> corio::Task<> {
    q.put_nowait(0);
    for (int i = 1; i <= 3; ++i) (void)corio::create_task(parked(q.put(i), log, destroyed));
    co_await turns(1);
  });
  EXPECT_EQ(destroyed, 3);
  EXPECT_TRUE(log.empty());
  corio::run(
      [](corio::Queue<int>& q, Log& log) -> corio::Task<> {
        EXPECT_EQ(q.get_nowait(), 0);
        EXPECT_FALSE(q.full());  // no slot reserved for a dead put
        q.put_nowait(4);
        auto b = corio::create_task(putter(q, log, "b", 5));
        co_await turns(1);
        EXPECT_EQ(q.get_nowait(), 4);  // the slot goes to b
        co_await turns(1);
        EXPECT_TRUE(b.done());
        EXPECT_EQ(q.get_nowait(), 5);
        EXPECT_TRUE(q.empty());
      }(q, log),
      kVirtual);
  EXPECT_EQ(log, (Log{"b<5"}));
}

TEST(Queue, JoinersDestroyedWhileParkedLeaveNoTrace) {
  corio::Queue<int> q;
  Log log;
  int destroyed = 0;
  run_then_drop_loop([&]() -> corio::Task<> {
    q.put_nowait(0);
    for (int i = 0; i < 3; ++i) (void)corio::create_task(parked(q.join(), log, destroyed));
    co_await turns(1);
  });
  EXPECT_EQ(destroyed, 3);
  EXPECT_TRUE(log.empty());
  corio::run(
      [](corio::Queue<int>& q, Log& log) -> corio::Task<> {
        bool joined = false;
        auto j = corio::create_task([](corio::Queue<int>& q, bool& joined) -> corio::Task<> {
          co_await q.join();
          joined = true;
        }(q, joined));
        co_await turns(1);
        EXPECT_FALSE(joined);
        EXPECT_EQ(q.get_nowait(), 0);
        q.task_done();  // wakes the live joiner only
        co_await turns(1);
        EXPECT_TRUE(joined);
        EXPECT_TRUE(j.done());
        EXPECT_TRUE(log.empty());
      }(q, log),
      kVirtual);
}

// ---------------------------------------------------------------- wait_for around get()

// wait_for(q.get(), t): the value as a string, or "timeout".
template <class Q>
corio::Task<std::string> get_within(Q& q, std::chrono::milliseconds t) {
  try {
    co_return std::to_string(co_await corio::wait_for(q.get(), t));
  } catch (const corio::TimeoutError&) {
    co_return "timeout";
  }
}

TEST(Queue, WaitForAroundGet) {
  Log log;
  corio::run(
      [](Log& log) -> corio::Task<> {
        corio::Queue<int> q;
        q.put_nowait(1);
        EXPECT_EQ(co_await get_within(q, 1000ms), "1");  // an item there: at once
        // Times out while waiting, with another getter behind: the next item goes to that getter.
        auto timed = corio::create_task(get_within(q, 1000ms));
        co_await turns(2);
        auto c = corio::create_task(getter(q, log, "c"));
        EXPECT_EQ(co_await timed, "timeout");
        EXPECT_EQ(now(), 1.0);
        q.put_nowait(2);  // to c
        co_await turns(1);
        EXPECT_TRUE(c.done());
        // Times out with nobody behind: a later item stays in the queue.
        EXPECT_EQ(co_await get_within(q, 1000ms), "timeout");
        q.put_nowait(3);
        EXPECT_EQ(q.size(), 1u);
        EXPECT_EQ(q.get_nowait(), 3);
        // An item put within the timeout is returned.
        auto producer = corio::create_task([](corio::Queue<int>& q) -> corio::Task<> {
          co_await corio::sleep(500ms);
          q.put_nowait(4);
        }(q));
        EXPECT_EQ(co_await get_within(q, 1000ms), "4");
        EXPECT_EQ(now(), 2.5);
        co_await producer;
        EXPECT_TRUE(q.empty());
      }(log),
      kVirtual);
  EXPECT_EQ(log, (Log{"c:2"}));
}

// An item is handed to wait_for's inner get and the deadline passes before that task runs: the get was
// ready first, so it runs first and wait_for returns the item (it used to time out, the item going to the
// getter behind or back into the queue; real clock, see the Lock test). Then the same hand-over with the
// wait cancelled from outside before the get runs: no item is lost, it goes to the getter behind or back
// into the queue.
TEST(Queue, WaitForReturnsTheItemHandedOverBeforeTheDeadlineWasSeen) {
  bool too_slow = false;
  Log log;
  corio::run([](bool& too_slow, Log& log) -> corio::Task<> {
    corio::Queue<int> q;
    for (bool getter_behind : {true, false}) {
      const double deadline = now() + 0.05;  // (wait_for's comes a little later)
      auto timed = corio::create_task(get_within(q, 50ms));
      if (!co_await corio_test::until_parked_at("queue get", [&] { return timed.done(); })) {
        too_slow = true;
        co_return;
      }
      corio::TaskHandle<> c;
      if (getter_behind) c = corio::create_task(getter(q, log, "c"));
      co_await turns(1);
      if (now() >= deadline) {  // (not seen by the loop yet: see the Lock test)
        too_slow = true;
        co_return;
      }
      q.put_nowait(7);  // handed to the inner get...
      EXPECT_EQ(q.size(), 0u);
      corio_test::spin_past(deadline + 0.02);  // ...and the deadline passes before it runs
      EXPECT_EQ(co_await timed, "7");
      if (getter_behind) {
        EXPECT_FALSE(c.done());
        q.put_nowait(8);  // to c
        co_await turns(2);
        EXPECT_TRUE(c.done());
      }
      EXPECT_TRUE(q.empty());

      auto cancelled = corio::create_task(get_within(q, 3600s));
      EXPECT_TRUE(co_await corio_test::until_parked_at("queue get", [&] { return cancelled.done(); }));
      corio::TaskHandle<> d;
      if (getter_behind) d = corio::create_task(getter(q, log, "d"));
      co_await turns(1);
      q.put_nowait(9);  // handed to the inner get, whose wait is then cancelled before it runs
      cancelled.cancel();
      EXPECT_THROW(co_await cancelled, corio::CancelledError);
      co_await turns(2);
      if (getter_behind) {
        EXPECT_TRUE(d.done());  // the item reached d
        EXPECT_TRUE(q.empty());
      } else {
        EXPECT_EQ(q.size(), 1u);  // back in the queue
        EXPECT_EQ(q.get_nowait(), 9);
      }
    }
  }(too_slow, log));
  if (too_slow) GTEST_SKIP() << "the loop stalled for 50 ms before the get waited";
  EXPECT_EQ(log, (Log{"c:8", "d:9"}));
}

}  // namespace

// A put() woken with a slot reserved for it owns that slot, even if the queue fills again before it runs
// (a getter handed an item is cancelled and puts it back): it must neither throw QueueFull nor lose its
// item (the queue then holds one over maxsize for a while, as after any such put-back).
TEST(Queue, PutGivenASlotKeepsItWhenACancelledGetterPutsItsItemBack) {
  corio::run([]() -> corio::Task<> {
    corio::Queue<int> q(1);
    corio::Event go;
    auto getter =
        corio::create_task([](corio::Queue<int>& q) -> corio::Task<int> { co_return co_await q.get(); }(q));
    auto putter = corio::create_task([](corio::Queue<int>& q, corio::Event& go) -> corio::Task<std::string> {
      co_await go.wait();
      try {
        co_await q.put(3);
        co_return "put";
      } catch (const corio::QueueFull&) {
        co_return "QueueFull";
      }
    }(q, go));
    auto other = corio::create_task(
        [](corio::Queue<int>& q, corio::Event& go, corio::TaskHandle<int> getter) -> corio::Task<int> {
          co_await go.wait();
          getter.cancel();           // the getter was handed 1 and has not run: 1 goes back to the queue
          co_return q.get_nowait();  // takes 2; the freed slot is reserved for the waiting putter
        }(q, go, getter));
    co_await turns(3);  // the getter waits on the empty queue, the others on the event
    go.set();           // wakes the putter, then the other task
    q.put_nowait(1);    // handed straight to the getter (woken after them)
    q.put_nowait(2);    // the queue is full
    EXPECT_EQ(co_await other, 2);
    EXPECT_EQ(co_await putter, "put");
    try {
      (void)co_await getter;
      ADD_FAILURE() << "the getter was not cancelled";
    } catch (const corio::CancelledError&) {
    }
    std::vector<int> left;
    while (!q.empty()) left.push_back(q.get_nowait());
    EXPECT_EQ(left, (std::vector<int>{1, 3}));  // nothing lost, 1 first in line
  }());
}

// A put given a slot, then the queue shut down before it ran: it throws QueueShutDown and puts nothing, as
// asyncio's put() does after its wait. (It used to put its item after the shutdown; with immediate=true
// that item then kept join() waiting for ever.)
TEST(Queue, PutGivenASlotThenShutDownThrowsAndPutsNothing) {
  for (bool immediate : {false, true}) {
    corio::run(
        [](bool immediate) -> corio::Task<> {
          corio::Queue<int> q(1);
          q.put_nowait(1);
          auto producer = corio::create_task([](corio::Queue<int>& q) -> corio::Task<std::string> {
            try {
              co_await q.put(2);
              co_return "put";
            } catch (const corio::QueueShutDown&) {
              co_return "QueueShutDown";
            }
          }(q));
          co_await turns(1);             // the producer waits in put()
          EXPECT_EQ(q.get_nowait(), 1);  // frees the slot, given to the producer
          q.task_done();
          q.shutdown(immediate);
          EXPECT_EQ(co_await producer, "QueueShutDown") << "immediate=" << immediate;
          EXPECT_EQ(q.size(), 0u);
          co_await corio::wait_for(q.join(), 1s);  // nothing unfinished
        }(immediate),
        kVirtual);
  }
}

// A get handed an item, or a put given a slot, whose task is destroyed before it runs (the loop closed):
// the item goes back into the queue and the slot to the next put, as when such a task is cancelled. The
// queue here outlives its loop. (The item and its unfinished count were lost, and the slot stayed taken:
// an empty Queue(1) was full for ever.)
TEST(Queue, WaitersDestroyedBeforeTheyRanGiveTheirItemOrSlotBack) {
  corio::Queue<int> got(1);
  run_then_drop_loop([&got]() -> corio::Task<> {
    (void)corio::create_task([](corio::Queue<int>& q) -> corio::Task<> { (void)co_await q.get(); }(got));
    co_await turns(1);                 // the getter waits
    got.put_nowait(7);                 // handed to it; the loop closes before it runs:
    corio::get_running_loop().stop();  // (the loop would otherwise turn once more, as asyncio's)
  });
  EXPECT_EQ(got.size(), 1u);
  EXPECT_EQ(got.get_nowait(), 7);
  got.task_done();

  corio::Queue<int> put(1);
  put.put_nowait(1);
  run_then_drop_loop([&put]() -> corio::Task<> {
    (void)corio::create_task([](corio::Queue<int>& q) -> corio::Task<> { co_await q.put(2); }(put));
    co_await turns(1);               // the putter waits
    EXPECT_EQ(put.get_nowait(), 1);  // the slot is given to it; the loop closes before it runs
    put.task_done();
    corio::get_running_loop().stop();
  });
  EXPECT_EQ(put.size(), 0u);
  EXPECT_FALSE(put.full());
  put.put_nowait(3);
  EXPECT_EQ(put.size(), 1u);
}

// ---------------------------------------------------------------- queue destroyed before a woken task runs

// A get handed an item, or a put given a slot, then the queue destroyed before the woken task runs: as in
// asyncio (whose woken get/put keep the queue alive), the get returns the item and the put returns; a task
// cancelled in between gets CancelledError; a get woken by shutdown gets QueueShutDown. None of them may
// touch the freed queue (its await_resume read the queue: ASan heap-use-after-free).
TEST(Queue, DestroyedAfterWakingAGetOrAPutBeforeTheirTasksRun) {
  for (bool cancel : {false, true}) {
    std::vector<std::string> log;
    corio::run(
        [](bool cancel, std::vector<std::string>& log) -> corio::Task<> {
          auto gq = std::make_unique<corio::Queue<int>>();
          auto pq = std::make_unique<corio::Queue<int>>(1);
          pq->put_nowait(1);
          auto g = corio::create_task(getter(*gq, log, "g"));
          auto p = corio::create_task(putter(*pq, log, "p", 2));
          co_await turns(1);               // both wait
          gq->put_nowait(7);               // handed to g
          EXPECT_EQ(pq->get_nowait(), 1);  // the slot goes to p
          gq.reset();
          pq.reset();
          if (cancel) {
            g.cancel();
            p.cancel();
          }
          co_await turns(2);
          EXPECT_EQ(g.cancelled(), cancel);
          EXPECT_EQ(p.cancelled(), cancel);
        }(cancel, log),
        kVirtual);
    if (cancel) {
      EXPECT_EQ(log, (std::vector<std::string>{"g:cancelled", "p:cancelled"}));
    } else {
      EXPECT_EQ(log, (std::vector<std::string>{"g:7", "p<2"}));
    }
  }
  // Woken by shutdown, then destroyed: QueueShutDown.
  std::vector<std::string> log;
  corio::run(
      [](std::vector<std::string>& log) -> corio::Task<> {
        auto q = std::make_unique<corio::Queue<int>>(1);
        auto g = corio::create_task(getter(*q, log, "g"));
        co_await turns(1);
        q->shutdown();
        q.reset();
        co_await g;
      }(log),
      kVirtual);
  EXPECT_EQ(log, (std::vector<std::string>{"g:shutdown"}));
}

// The same, but the woken tasks are destroyed with their loop before they run, after the queue: their
// awaiters' destructors must not give the item or the slot back to the freed queue.
TEST(Queue, DestroyedAfterWakingAGetOrAPutThenTheirTasksDestroyed) {
  run_then_drop_loop([]() -> corio::Task<> {
    auto gq = std::make_unique<corio::Queue<int>>();
    auto pq = std::make_unique<corio::Queue<int>>(1);
    pq->put_nowait(1);
    (void)corio::create_task([](corio::Queue<int>& q) -> corio::Task<> { (void)co_await q.get(); }(*gq));
    (void)corio::create_task([](corio::Queue<int>& q) -> corio::Task<> { co_await q.put(2); }(*pq));
    co_await turns(1);
    gq->put_nowait(7);
    EXPECT_EQ(pq->get_nowait(), 1);
    gq.reset();
    pq.reset();
    corio::get_running_loop().stop();  // the loop closes before the woken tasks run
  });
}

// join() woken by the unfinished count reaching zero returns, even if another item was put before it ran
// (asyncio's join() waits on an event that was set then).
TEST(Queue, JoinWokenAtZeroReturnsThoughAnItemArrivedBeforeItRan) {
  corio::run(
      []() -> corio::Task<> {
        corio::Queue<int> q;
        q.put_nowait(1);
        auto joiner = corio::create_task(q.join());
        co_await turns(1);
        (void)q.get_nowait();
        q.task_done();    // zero: the joiner is woken
        q.put_nowait(2);  // and an item arrives before it runs
        co_await corio::wait_for(joiner, 1s);
        EXPECT_EQ(q.size(), 1u);
      }(),
      kVirtual);
}
