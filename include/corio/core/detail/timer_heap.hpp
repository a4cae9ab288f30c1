// The loop's timers: a binary min-heap of intrusive nodes ordered by (due time, arrival), so timers due at
// the same instant fire in the order they were added. Each node knows its heap slot, which makes cancelling
// O(log n) and keeps the heap free of dead entries. Allocation-free once the vector has grown.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace corio::detail {

struct TimerNode {
  static constexpr std::uint32_t npos = static_cast<std::uint32_t>(-1);
  std::int64_t when_ns_ = 0;         // due time on the loop's clock
  std::uint32_t seq_ = 0;            // arrival order, breaks ties (compared modulo 2^32)
  std::uint32_t heap_index_ = npos;  // npos <=> not in a heap

  bool scheduled() const noexcept { return heap_index_ != npos; }
  // Called by the loop when the timer is due, after it left the heap. Must only enqueue work.
  virtual void fire() = 0;
  // The loop is closing with this timer still pending.
  virtual void discard() noexcept {}

 protected:
  ~TimerNode() = default;
};

class TimerHeap {
 public:
  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  TimerNode* top() const noexcept { return heap_.empty() ? nullptr : heap_.front(); }

  void push(TimerNode& n) {
    n.seq_ = next_seq_++;
    n.heap_index_ = static_cast<std::uint32_t>(heap_.size());
    heap_.push_back(&n);
    sift_up(n.heap_index_);
  }

  TimerNode* pop() noexcept {
    TimerNode* n = heap_.front();
    remove_at(0);
    return n;
  }

  void remove(TimerNode& n) noexcept {
    if (n.scheduled()) remove_at(n.heap_index_);
  }

  template <class F>
  void for_each(F&& f) const {
    for (TimerNode* n : heap_) f(*n);
  }

 private:
  static bool less(const TimerNode* a, const TimerNode* b) noexcept {
    return a->when_ns_ < b->when_ns_ ||
           (a->when_ns_ == b->when_ns_ && static_cast<std::int32_t>(a->seq_ - b->seq_) < 0);
  }
  void place(std::size_t i, TimerNode* n) noexcept {
    heap_[i] = n;
    n->heap_index_ = static_cast<std::uint32_t>(i);
  }
  void remove_at(std::size_t i) noexcept {
    TimerNode* gone = heap_[i];
    TimerNode* last = heap_.back();
    heap_.pop_back();
    gone->heap_index_ = TimerNode::npos;
    if (i < heap_.size()) {
      place(i, last);
      sift_down(i);
      sift_up(last->heap_index_);
    }
  }
  void sift_up(std::size_t i) noexcept {
    TimerNode* n = heap_[i];
    while (i > 0) {
      std::size_t parent = (i - 1) / 2;
      if (!less(n, heap_[parent])) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, n);
  }
  void sift_down(std::size_t i) noexcept {
    TimerNode* n = heap_[i];
    const std::size_t size = heap_.size();
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && less(heap_[child + 1], heap_[child])) ++child;
      if (!less(heap_[child], n)) break;
      place(i, heap_[child]);
      i = child;
    }
    place(i, n);
  }

  std::vector<TimerNode*> heap_;
  std::uint32_t next_seq_ = 0;
};

}  // namespace corio::detail
