// The loop's ready queue: an intrusive FIFO of work to run this turn or the next. Tasks embed their node,
// so scheduling a task never allocates.
#pragma once

#include <cstddef>

namespace corio::detail {

struct ReadyNode {
  ReadyNode* ready_next_ = nullptr;
  // Runs the node's work. The loop calls it exactly once per enqueue.
  virtual void run_ready() = 0;
  // The loop is closing with this node still queued: drop it without running it.
  virtual void discard() noexcept = 0;

 protected:
  ~ReadyNode() = default;
};

class ReadyQueue {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  // The node queued last, or null: the loop runs up to it and no further in one turn.
  ReadyNode* back() const noexcept { return tail_; }
  void push(ReadyNode& n) noexcept {
    n.ready_next_ = nullptr;
    if (tail_)
      tail_->ready_next_ = &n;
    else
      head_ = &n;
    tail_ = &n;
  }
  // Not empty() first. (A popped node's ready_next_ is stale until it is pushed again.)
  ReadyNode* pop() noexcept {
    ReadyNode* n = head_;
    head_ = n->ready_next_;
    if (!head_) tail_ = nullptr;
    return n;
  }

 private:
  ReadyNode* head_ = nullptr;
  ReadyNode* tail_ = nullptr;
};

}  // namespace corio::detail
