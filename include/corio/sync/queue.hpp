// Queue, PriorityQueue, LifoQueue: FIFO/priority/LIFO queues between tasks (asyncio.Queue and friends).
//
// put() suspends while the queue is full (maxsize > 0), get() while it is empty; each is resumed by the
// loop on the turn after a slot or an item appeared, in FIFO order of waiting, then checks again (a
// put_nowait/get_nowait in between may take it first, as in asyncio). A waiter woken but cancelled before
// it runs passes the wake-up on. task_done()/join() count unfinished items; shutdown() wakes every waiter
// with QueueShutDown. Move-only T works. Not thread-safe: use from the loop's thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <utility>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/task.hpp"
#include "corio/sync/detail/wait_list.hpp"

namespace corio {
namespace detail {

template <class T>
struct FifoStore {
  std::deque<T> items;
  void push(T&& x) { items.push_back(std::move(x)); }
  T pop() {
    T x = std::move(items.front());
    items.pop_front();
    return x;
  }
  std::size_t size() const noexcept { return items.size(); }
  void clear() { items.clear(); }
};

template <class T>
struct LifoStore {
  std::vector<T> items;
  void push(T&& x) { items.push_back(std::move(x)); }
  T pop() {
    T x = std::move(items.back());
    items.pop_back();
    return x;
  }
  std::size_t size() const noexcept { return items.size(); }
  void clear() { items.clear(); }
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
  T pop() {
    std::pop_heap(items.begin(), items.end(), [this](const T& a, const T& b) { return greater(a, b); });
    T x = std::move(items.back());
    items.pop_back();
    return x;
  }
  std::size_t size() const noexcept { return items.size(); }
  void clear() { items.clear(); }
};

template <class T, class Store>
class BasicQueue {
 public:
  explicit BasicQueue(std::size_t maxsize = 0) : maxsize_(maxsize) {}
  BasicQueue(const BasicQueue&) = delete;
  BasicQueue& operator=(const BasicQueue&) = delete;

  std::size_t size() const noexcept { return store_.size(); }
  std::size_t maxsize() const noexcept { return maxsize_; }
  bool empty() const noexcept { return store_.size() == 0; }
  bool full() const noexcept { return maxsize_ > 0 && store_.size() >= maxsize_; }

  // Suspends while full; throws QueueShutDown once shut down.
  Task<> put(T item) {
    while (full()) {
      if (shutdown_) throw QueueShutDown();
      WaitList::Node node(putters_, "queue put");
      try {
        co_await node;
      } catch (const CancelledError&) {
        if (node.granted && !full()) putters_.wake_one();
        throw;
      }
    }
    put_nowait(std::move(item));
  }
  // Throws QueueFull when full, QueueShutDown once shut down.
  void put_nowait(T item) {
    if (shutdown_) throw QueueShutDown();
    if (full()) throw QueueFull();
    store_.push(std::move(item));
    ++unfinished_;
    getters_.wake_one();
  }
  // Suspends while empty; throws QueueShutDown once shut down and empty.
  Task<T> get() {
    while (empty()) {
      if (shutdown_) throw QueueShutDown();
      WaitList::Node node(getters_, "queue get");
      try {
        co_await node;
      } catch (const CancelledError&) {
        if (node.granted && !empty()) getters_.wake_one();
        throw;
      }
    }
    co_return get_nowait();
  }
  // Throws QueueEmpty when empty (QueueShutDown when also shut down).
  T get_nowait() {
    if (empty()) {
      if (shutdown_) throw QueueShutDown();
      throw QueueEmpty();
    }
    T item = store_.pop();
    putters_.wake_one();
    return item;
  }
  // One item taken with get() is fully processed. Throws corio::Error when called more times than items
  // were put.
  void task_done() {
    if (unfinished_ == 0) throw Error("task_done() called too many times");
    if (--unfinished_ == 0) joiners_.wake_all();
  }
  // Suspends until every item put has been marked task_done().
  Task<> join() {
    while (unfinished_ > 0) {
      WaitList::Node node(joiners_, "queue join");
      co_await node;
    }
  }
  // Puts and later gets throw QueueShutDown (gets only once empty, unless immediate); every waiting put and
  // get is woken to throw it. immediate also drops the items and settles join().
  void shutdown(bool immediate = false) {
    shutdown_ = true;
    if (immediate) {
      std::size_t dropped = store_.size();
      store_.clear();
      unfinished_ -= std::min(unfinished_, dropped);
      if (unfinished_ == 0) joiners_.wake_all();
    }
    getters_.wake_all();
    putters_.wake_all();
  }
  bool is_shut_down() const noexcept { return shutdown_; }

 private:
  Store store_;
  std::size_t maxsize_;
  std::size_t unfinished_ = 0;
  bool shutdown_ = false;
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
