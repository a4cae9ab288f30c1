// Queue, PriorityQueue, LifoQueue: FIFO/priority/LIFO queues between tasks (asyncio.Queue and friends).
//
// put() suspends while the queue is full (maxsize > 0), get() while it is empty; each is resumed by the
// loop on the turn after a slot or an item appeared, in FIFO order of waiting. An item put while gets wait
// is handed straight to the longest-waiting get and never enters the queue (size() stays 0), so a
// get_nowait() in between cannot take it; likewise a freed slot is reserved for the longest-waiting put
// (full() counts it until that put runs, so a put_nowait() in between cannot take it). This differs from
// asyncio, where the item or slot stays up for grabs until the woken task runs: a deliberate difference,
// for speed (no re-check, no lost race, no retry). So items put in one turn while gets wait go to those gets
// in put order, in a PriorityQueue or LifoQueue too. A waiter woken but cancelled before it runs passes the
// item or slot on: the item back to where it would be had it stayed in the queue, or to a get still
// waiting; the gets woken after it keep theirs (in asyncio the next get would take the older item: gets
// g1 and g2 wait, 1, 2 and 3 are put, g1 is cancelled: asyncio's g2 gets 1, corio's 2, with 1 back in front
// of 3). task_done()/join() count unfinished items; shutdown() wakes every waiter with
// QueueShutDown. The queue may be destroyed after waking a get or a put and before its task runs: the get
// returns its item and the put returns (as asyncio's, which keep the queue alive), unless cancelled
// (CancelledError) or woken by shutdown (QueueShutDown). Move-only T works. Not thread-safe: use from the
// loop's thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/task.hpp"
#include "corio/sync/detail/wait_list.hpp"

namespace corio {
namespace detail {

// Each store's unget(x) puts back an item that was handed to a waiting get whose task was then cancelled,
// where the item would be had it stayed in the queue, as in asyncio. Such an item is older than everything
// in the store (it was handed over because the store was empty), and items come back in the order they
// were handed over (the woken tasks run in that order).
template <class T>
struct FifoStore {
  std::deque<T> items;
  // Invariant: the first `returned` items came back through unget(), oldest first; the next comes after them.
  std::size_t returned = 0;
  void push(T&& x) { items.push_back(std::move(x)); }
  void unget(T&& x) {
    items.insert(items.begin() + static_cast<std::ptrdiff_t>(returned), std::move(x));
    ++returned;
  }
  T pop() {
    T x = std::move(items.front());
    items.pop_front();
    if (returned > 0) --returned;
    return x;
  }
  std::size_t size() const noexcept { return items.size(); }
  bool empty() const noexcept { return items.empty(); }  // cheaper than size() == 0 for a deque
  void clear() {
    items.clear();
    returned = 0;
  }
};

template <class T>
struct LifoStore {
  std::vector<T> items;  // the top is the back
  // Invariant: the bottom `returned` items came back through unget(), oldest at the bottom; the next goes
  // right above them, under every item put since.
  std::size_t returned = 0;
  void push(T&& x) { items.push_back(std::move(x)); }
  void unget(T&& x) {
    items.insert(items.begin() + static_cast<std::ptrdiff_t>(returned), std::move(x));
    ++returned;
  }
  T pop() {
    T x = std::move(items.back());
    items.pop_back();
    if (returned > items.size()) returned = items.size();
    return x;
  }
  std::size_t size() const noexcept { return items.size(); }
  bool empty() const noexcept { return items.empty(); }  // cheaper than size() == 0 for a deque
  void clear() {
    items.clear();
    returned = 0;
  }
};

// A binary heap whose top is the smallest element under Compare (as Python's heapq).
template <class T, class Compare>
struct HeapStore {
  std::vector<T> items;
  [[no_unique_address]] Compare comp;
  bool greater(const T& a, const T& b) const { return comp(b, a); }
  void push(T&& x) {
    items.push_back(std::move(x));
    std::push_heap(items.begin(), items.end(), [this](const T& a, const T& b) { return greater(a, b); });
  }
  void unget(T&& x) { push(std::move(x)); }  // by priority, as any item
  T pop() {
    std::pop_heap(items.begin(), items.end(), [this](const T& a, const T& b) { return greater(a, b); });
    T x = std::move(items.back());
    items.pop_back();
    return x;
  }
  std::size_t size() const noexcept { return items.size(); }
  bool empty() const noexcept { return items.empty(); }
  void clear() { items.clear(); }
};

template <class T, class Store>
class BasicQueue {
 public:
  class GetAwaiter;
  class PutAwaiter;

  explicit BasicQueue(std::size_t maxsize = 0) : maxsize_(maxsize) {}
  BasicQueue(const BasicQueue&) = delete;
  BasicQueue& operator=(const BasicQueue&) = delete;

  std::size_t size() const noexcept { return store_.size(); }
  std::size_t maxsize() const noexcept { return maxsize_; }
  bool empty() const noexcept { return store_.empty(); }
  bool full() const noexcept { return maxsize_ > 0 && store_.size() + reserved_ >= maxsize_; }

  // Suspends while full; throws QueueShutDown once shut down. Returns an awaitable (not a Task<>, as
  // DESIGN.md lists it) so a put that need not wait costs no coroutine frame. When a slot frees, it is
  // reserved for the longest-waiting put, whose task then adds its item on resumption; cancelled before
  // that, it passes the slot on and its item is not put.
  PutAwaiter put(T item) { return PutAwaiter(*this, std::move(item)); }
  // Throws QueueFull when full, QueueShutDown once shut down.
  void put_nowait(T item) {
    if (shutdown_) throw QueueShutDown();
    if (full()) throw QueueFull();
    add(std::move(item));
  }
  // Suspends while empty; throws QueueShutDown once shut down and empty. Returns an awaitable (not a
  // Task<>): an item put while gets wait is handed to the longest-waiting one. If its task is cancelled
  // before it runs, the item goes to the next waiting get, or if none waits back into the queue where it
  // would be had it never left: the front of a Queue, its place by priority in a PriorityQueue, the bottom
  // of a LifoQueue. Such a returned item may take size() above maxsize (by one per get cancelled so, since
  // the puts after the hand-over were not held back by it); full() is then true and put()/put_nowait() wait
  // or throw QueueFull until size() is below maxsize again.
  GetAwaiter get() { return GetAwaiter(*this); }
  // Throws QueueEmpty when empty (QueueShutDown when also shut down).
  T get_nowait() {
    if (empty()) {
      if (shutdown_) throw QueueShutDown();
      throw QueueEmpty();
    }
    T item = store_.pop();
    pass_slot();
    return item;
  }
  // One item taken with get() is fully processed. Throws corio::Error when called more times than items
  // were put.
  void task_done() {
    if (unfinished_ == 0) throw Error("task_done() called too many times");
    if (--unfinished_ == 0) joiners_.wake_all();
  }
  // Suspends until every item put has been marked task_done().
  // Woken when the count reaches zero, it returns even if an item was put again before it ran (as asyncio).
  Task<> join() {
    if (unfinished_ > 0) {
      WaitList::Node node(joiners_, "queue join");
      co_await node;
    }
  }
  // Puts and later gets throw QueueShutDown (gets only once empty, unless immediate); every waiting put and
  // get is woken to throw it. immediate also drops the items and settles join().
  void shutdown(bool immediate = false) {
    shutdown_ = true;
    if (immediate) {
      immediate_ = true;
      std::size_t dropped = store_.size();
      store_.clear();
      drop_unfinished(dropped);
      getters_.mark_woken(kDropped);
    }
    getters_.wake_all_tracked(kShutDown);
    putters_.wake_all_tracked(kShutDown);
  }
  bool is_shut_down() const noexcept { return shutdown_; }

  class [[nodiscard]] GetAwaiter : public WaitList::Node {
   public:
    explicit GetAwaiter(BasicQueue& q) noexcept : Node(q.getters_, "queue get"), q_(&q) {}
    GetAwaiter(GetAwaiter&& o) noexcept : Node(std::move(o)), q_(o.q_) {}
    // Handed an item but destroyed before it ran (its task destroyed with a closing loop, or a generator
    // running it destroyed): the item goes back, as for a get cancelled then.
    ~GetAwaiter() {
      if (item_) [[unlikely]]
        give_back();
    }
    // Out of line, so that the destructor inlines into the awaiting coroutine as one test.
    [[gnu::noinline]] void give_back() noexcept {
      if (orphaned()) return;  // the queue is gone: the item goes with it
      if (q_->immediate_) {
        q_->drop_unfinished(1);
        return;
      }
      try {
        q_->unget(std::move(*item_));
      } catch (...) {  // (no memory for it: it is lost, and so is its count)
        q_->drop_unfinished(1);
      }
    }
    bool await_ready() const noexcept { return !q_->empty() || q_->shutdown_; }
    // Reads only this awaiter on its common path, so that the queue may be destroyed after handing it the
    // item and before its task runs (the item is returned, as asyncio's get() returns it then).
    T await_resume() {
      // The common case, kept small enough to inline: handed an item, and neither cancelled since nor
      // shut down with immediate=true (status kDropped). (item_ is only set on a parked getter, so task_
      // is set.)
      if (item_ && status == 0 && !task_->cancel_pending()) [[likely]] {
        T out = std::move(*item_);
        item_.reset();  // taken: the destructor has nothing to give back
        return out;
      }
      return resume_slow();
    }

   private:
    friend class BasicQueue;
    // Out of line, so that await_resume() stays small enough to inline into the awaiting coroutine.
    [[gnu::noinline]] T resume_slow() {
      if (orphaned()) {
        // The queue was destroyed after waking this get (or, cancelled, while it waited): nothing of it is
        // touched. A handed item, not cancelled since, was returned by await_resume(); a cancelled get's
        // item goes with the queue.
        item_.reset();
        throw_if_cancelled();
        throw QueueShutDown();  // woken by shutdown (or by an immediate one after the hand-over)
      }
      if (item_ && q_->immediate_) {
        // shutdown(immediate=true) came after the item was handed over: it is dropped with the rest.
        item_.reset();
        q_->drop_unfinished(1);
      }
      if (item_) {
        T item = std::move(*item_);
        item_.reset();
        if (!task_->cancel_pending()) return item;
        q_->unget(std::move(item));  // handed an item, then cancelled: it goes back, first in line
      }
      throw_if_cancelled();
      return q_->get_nowait();  // the ready path, or woken by shutdown (QueueShutDown once empty)
    }

    BasicQueue* q_;
    std::optional<T> item_;
  };

  class [[nodiscard]] PutAwaiter : public WaitList::Node {
   public:
    PutAwaiter(BasicQueue& q, T&& item) : Node(q.putters_, "queue put"), q_(&q), item_(std::move(item)) {}
    PutAwaiter(PutAwaiter&& o) noexcept : Node(std::move(o)), q_(o.q_), item_(std::move(o.item_)) {}
    // Given a slot but destroyed before it ran: the slot goes to the next put, as for a put cancelled then.
    ~PutAwaiter() {
      if (granted && status != kShutDown) [[unlikely]]
        give_back();
    }
    [[gnu::noinline]] void give_back() noexcept {  // (out of line: see GetAwaiter's)
      if (orphaned()) return;                      // the queue is gone, and the slot with it
      --q_->reserved_;
      q_->pass_slot();
    }
    bool await_ready() {
      if (q_->shutdown_) throw QueueShutDown();
      if (q_->full()) return false;
      q_->add(std::move(item_));
      return true;
    }
    void await_resume() {
      if (task_) resume_slow();  // else put at once in await_ready
    }

   private:
    [[gnu::noinline]] void resume_slow() {  // (out of line: see GetAwaiter's)
      if (orphaned()) {
        // The queue was destroyed after waking this put (or, cancelled, while it waited): nothing of it is
        // touched. Given a slot, the put returns (as asyncio's does; the item goes with the queue).
        const bool had_slot = granted && status != kShutDown;
        granted = false;
        throw_if_cancelled();
        if (had_slot) return;
        throw QueueShutDown();
      }
      if (granted && status != kShutDown) {
        granted = false;
        --q_->reserved_;  // the slot reserved for us
        if (task_->cancel_pending()) {
          q_->pass_slot();
          throw_if_cancelled();
        }
        if (q_->shutdown_) throw QueueShutDown();  // shut down after the slot was given (as asyncio)
        // The slot is ours even if the queue looks full again (a cancelled getter put its item back, as
        // unget() may): never QueueFull here, and never lose the item.
        q_->add(std::move(item_));
        return;
      }
      throw_if_cancelled();
      throw QueueShutDown();  // woken by shutdown
    }

    BasicQueue* q_;
    T item_;
  };

 private:
  // WaitList::Node::status: of waiters woken by shutdown(); of getters handed an item before
  // shutdown(immediate=true) and not run yet (the item is dropped).
  static constexpr int kShutDown = 1;
  static constexpr int kDropped = 2;
  // put_nowait() once the checks passed. Takes the item by reference so that it is moved once on its way
  // to a waiting get or into the store.
  void add(T&& item) {
    ++unfinished_;
    if (auto* getter = static_cast<GetAwaiter*>(getters_.front())) {
      // A getter waits, so the store is empty: hand the item straight over.
      getter->item_.emplace(std::move(item));
      getters_.wake_one_tracked(0);
      pass_slot();  // the item never took a slot
      return;
    }
    store_.push(std::move(item));
  }
  void drop_unfinished(std::size_t n) {
    unfinished_ -= std::min(unfinished_, n);
    if (unfinished_ == 0) joiners_.wake_all();
  }
  // A slot freed: reserve it for the longest-waiting put, if any.
  void pass_slot() {
    if (!putters_.empty() && !shutdown_ && !full()) {
      ++reserved_;
      putters_.wake_one_tracked(0);
    }
  }
  void unget(T&& item) {
    if (auto* getter = static_cast<GetAwaiter*>(getters_.front())) {
      getter->item_.emplace(std::move(item));
      getters_.wake_one_tracked(0);
      return;
    }
    store_.unget(std::move(item));
  }

  Store store_;
  std::size_t maxsize_;
  std::size_t reserved_ = 0;  // freed slots promised to woken puts that have not run yet
  std::size_t unfinished_ = 0;
  bool shutdown_ = false;
  bool immediate_ = false;  // shut down with immediate=true
  // Getters and putters are woken tracked (WaitList::wake_one_tracked), so that the queue's destruction
  // before a woken task runs orphans its awaiter, and shutdown(immediate=true) reaches getters handed an
  // item (kDropped) through their awaiter, which is all the common path of get() reads.
  WaitList getters_;
  WaitList putters_;
  WaitList joiners_;
};

}  // namespace detail

template <class T>
class Queue : public detail::BasicQueue<T, detail::FifoStore<T>> {
 public:
  using detail::BasicQueue<T, detail::FifoStore<T>>::BasicQueue;
};

// get() returns the smallest element under Compare first, as asyncio's heapq-based PriorityQueue does (the
// opposite of std::priority_queue).
template <class T, class Compare = std::less<T>>
class PriorityQueue : public detail::BasicQueue<T, detail::HeapStore<T, Compare>> {
 public:
  using detail::BasicQueue<T, detail::HeapStore<T, Compare>>::BasicQueue;
};

template <class T>
class LifoQueue : public detail::BasicQueue<T, detail::LifoStore<T>> {
 public:
  using detail::BasicQueue<T, detail::LifoStore<T>>::BasicQueue;
};

}  // namespace corio
