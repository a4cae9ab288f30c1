// The loop's timers, ordered by (due time, arrival), so timers due at the same instant fire in the order they
// were added. Two structures share that order:
// - a run: a FIFO of timers added in non-decreasing due order. Most timers are: a program sleeps or times
//   out with a few fixed delays, so each new deadline of one delay is later than the last. Adding to the
//   run and taking from its front are O(1) and walk memory in order;
// - a binary min-heap for the others, O(log n).
// The earliest timer is the earlier of the run's front and the heap's top. Each node knows its slot (a
// heap index, or a run position with the top bit set), so cancelling is O(log n) in the heap and O(1) in
// the run (the slot is emptied; emptied slots at the front are skipped at once, the rest when the front
// reaches them, and the run is compacted when it is mostly empty). Allocation-free once the vectors grew.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace corio::detail {

struct TimerNode {
  static constexpr std::uint32_t npos = static_cast<std::uint32_t>(-1);
  std::int64_t when_ns_ = 0;         // due time on the loop's clock
  std::uint32_t seq_ = 0;            // arrival order, breaks ties (compared modulo 2^32)
  std::uint32_t heap_index_ = npos;  // its slot in the TimerHeap; npos <=> not scheduled

  bool scheduled() const noexcept { return heap_index_ != npos; }
  // Called by the loop when the timer is due, after it left the TimerHeap. Must only enqueue work.
  virtual void fire() = 0;
  // The loop is closing with this timer still pending.
  virtual void discard() noexcept {}

 protected:
  ~TimerNode() = default;
};

class TimerHeap {
 public:
  bool empty() const noexcept { return heap_.empty() && run_live_ == 0; }
  // Slots in use, live or emptied (for tests: memory stays proportional to the live timers).
  std::size_t slots() const noexcept { return heap_.size() + run_.size() - run_head_; }
  std::size_t size() const noexcept { return heap_.size() + run_live_; }
  TimerNode* top() const noexcept {
    TimerNode* r = run_live_ ? run_[run_head_] : nullptr;
    if (heap_.empty()) return r;
    return r && less(r, heap_.front()) ? r : heap_.front();
  }

  void push(TimerNode& n) {
    n.seq_ = next_seq_++;
    if (run_live_ == 0 || n.when_ns_ >= run_last_when_) {
      if (run_head_ == run_.size()) {  // (all slots consumed: start over at the front)
        run_.clear();
        run_head_ = 0;
      }
      if (run_.size() >= kRunBit - 1) {  // (positions must fit below the flag bit, and differ from npos)
        push_heap(n);
        return;
      }
      n.heap_index_ = static_cast<std::uint32_t>(run_.size()) | kRunBit;
      run_.push_back(&n);
      ++run_live_;
      run_last_when_ = n.when_ns_;
      return;
    }
    push_heap(n);
  }

  TimerNode* pop() noexcept {
    TimerNode* n = top();
    remove(*n);
    return n;
  }

  void remove(TimerNode& n) noexcept {
    if (!n.scheduled()) return;
    if (n.heap_index_ & kRunBit) {
      run_[n.heap_index_ & ~kRunBit] = nullptr;
      n.heap_index_ = TimerNode::npos;
      --run_live_;
      skip_empty_front();
      return;
    }
    remove_at(n.heap_index_);
  }

  template <class F>
  void for_each(F&& f) const {
    for (TimerNode* n : heap_) f(*n);
    for (std::size_t i = run_head_; i < run_.size(); ++i)
      if (run_[i]) f(*run_[i]);
  }

 private:
  static constexpr std::uint32_t kRunBit = std::uint32_t{1} << 31;

  static bool less(const TimerNode* a, const TimerNode* b) noexcept {
    return a->when_ns_ < b->when_ns_ ||
           (a->when_ns_ == b->when_ns_ && static_cast<std::int32_t>(a->seq_ - b->seq_) < 0);
  }

  // ---- the run
  void skip_empty_front() noexcept {
    if (run_live_ == 0) {
      run_.clear();
      run_head_ = 0;
      return;
    }
    while (!run_[run_head_]) ++run_head_;
    // Mostly consumed or emptied: move the live part to the front (renumbering its nodes). Also when the
    // front is live but most slots behind it were emptied (timeouts cancelled behind a far deadline), so
    // the run stays within 4x the live timers: each compaction follows 3x as many pushes, O(1) amortized.
    const std::size_t span = run_.size() - run_head_;
    if ((run_head_ >= 1024 && run_head_ * 2 >= run_.size()) || (span >= 1024 && run_live_ * 4 <= span))
      compact();
  }
  void compact() noexcept {
    std::size_t out = 0;
    for (std::size_t i = run_head_; i < run_.size(); ++i) {
      if (TimerNode* n = run_[i]) {
        n->heap_index_ = static_cast<std::uint32_t>(out) | kRunBit;
        run_[out++] = n;
      }
    }
    run_.resize(out);
    run_head_ = 0;
  }

  // ---- the heap
  void push_heap(TimerNode& n) {
    n.heap_index_ = static_cast<std::uint32_t>(heap_.size());
    heap_.push_back(&n);
    sift_up(n.heap_index_);
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
  std::vector<TimerNode*> run_;  // run_[run_head_..]: null where a timer was cancelled; run_[run_head_] live
  std::size_t run_head_ = 0;
  std::size_t run_live_ = 0;
  std::int64_t run_last_when_ = 0;  // the due time of the last timer added to the run
  std::uint32_t next_seq_ = 0;
};

}  // namespace corio::detail
