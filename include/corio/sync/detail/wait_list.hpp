// The one waiter list under every sync primitive (STYLE habit 8; tokio's batch_semaphore plays this role).
//
// A task that must wait parks a Node (living in its coroutine frame) at the back of a FIFO list. The
// primitive wakes nodes from the front and marks them `granted`: what they waited for is theirs (a lock
// handed over, a permit, a notification). A parked node that is cancelled unlinks itself and resumes with
// CancelledError; a node destroyed while parked unlinks itself. A node that was granted but whose task is
// cancelled before it runs sees CancelledError at resumption with `granted` still set: the primitive then
// passes the grant on, so no wake-up is ever lost.
#pragma once

#include <coroutine>
#include <cstddef>
#include <string>

#include "corio/core/detail/intrusive_list.hpp"
#include "corio/core/detail/runtime.hpp"

namespace corio::detail {

class WaitList {
 public:
  // Contract: suspends the awaiting task until a primitive grants this node (resumed by the loop on the
  // next turn) or the task is cancelled (CancelledError; `granted` tells whether a grant must be passed on).
  // Primitives' awaitables derive from Node to carry more (an item handed over, a reservation).
  struct Node : Waiter, ListNode {
    Node(WaitList& list, const char* what) noexcept : list_(&list), what_(what) {}
    // Movable until awaited (an awaitable returned by value, or wrapped into a task, is moved first).
    Node(Node&& o) noexcept : list_(o.list_), what_(o.what_) {}
    bool await_ready() const noexcept { return false; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
      list_->nodes_.push_back(*this);
      suspend_on(h);
    }
    void await_resume() { throw_if_cancelled(); }
    bool cancel() override {
      ListNode::unlink();
      return cancel_and_wake();
    }
    void describe(std::string& out) const override { out += what_; }

    WaitList* list_;
    const char* what_;
    bool granted = false;
    int status = 0;  // primitive-specific news for the woken task (broken barrier, shut-down queue)
  };

  bool empty() const noexcept { return nodes_.empty(); }
  std::size_t size() const noexcept { return nodes_.size(); }
  Node park(const char* what) noexcept { return Node(*this, what); }

  // The longest waiter, still parked (null if none).
  Node* front() noexcept { return nodes_.front(); }

  // Grants the first waiter and wakes it; false if nobody waits.
  bool wake_one(int status = 0) noexcept {
    Node* n = nodes_.pop_front();
    if (!n) return false;
    n->granted = true;
    n->status = status;
    n->wake();
    return true;
  }
  std::size_t wake_all(int status = 0) noexcept {
    std::size_t n = 0;
    while (wake_one(status)) ++n;
    return n;
  }

 private:
  IntrusiveList<Node> nodes_;
};

}  // namespace corio::detail
