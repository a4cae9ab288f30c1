// The one waiter list under every sync primitive (STYLE habit 8; tokio's batch_semaphore plays this role).
//
// A task that must wait parks a Node (living in its coroutine frame) at the back of a FIFO list. The
// primitive wakes nodes from the front and marks them `granted`: what they waited for is theirs (a lock
// handed over, a permit, a notification). A parked node that is cancelled unlinks itself and resumes with
// CancelledError; a node destroyed while parked unlinks itself. A node that was granted but whose task is
// cancelled before it runs sees CancelledError at resumption with `granted` still set: the primitive then
// passes the grant on, so no wake-up is ever lost. A primitive destroyed while tasks wait on it orphans their
// nodes (see ~WaitList), so that the cancellation which then ends each wait does not touch it.
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
    ~Node() { unpark(); }
    bool await_ready() const noexcept { return false; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
      list_->nodes_.push_back(*this);
      ++list_->size_;
      parked_ = true;
      suspend_on(h);
    }
    void await_resume() {
      ListNode::unlink();  // (from the list of those that left, if cancelled, or of the tracked woken)
      throw_if_cancelled();
    }
    bool cancel() override {
      // Off the waiters, onto the list of those that left, until the task runs: so that the primitive's
      // destruction in between still reaches this node (orphaned()).
      if (unpark()) list_->left_.push_back(*this);
      return cancel_and_wake();
    }
    void describe(std::string& out) const override { out += what_; }
    // The primitive was destroyed while this node waited in it, or after it was cancelled and before its
    // task ran (see ~WaitList): the code that resumes here (only a cancellation can) must not touch the
    // primitive.
    bool orphaned() const noexcept { return list_ == nullptr; }

    WaitList* list_;  // null once orphaned
    const char* what_;
    bool granted = false;
    int status = 0;  // primitive-specific news for the woken task (broken barrier, shut-down queue)

   private:
    friend class WaitList;
    // Leaves the waiters if still parked there (cancelled, or the frame destroyed mid-await).
    bool unpark() noexcept {
      if (!parked_) return false;
      parked_ = false;
      ListNode::unlink();
      --list_->size_;
      return true;
    }
    bool parked_ = false;  // in list_->nodes_ (else in list_->left_, or in no list)
  };

  WaitList() = default;
  WaitList(const WaitList&) = delete;
  WaitList& operator=(const WaitList&) = delete;
  // A primitive destroyed while tasks wait on it (its owner's frame went first: a task that failed, a loop
  // that closed): the nodes still parked are let go, unwoken, and so are the cancelled ones whose tasks
  // have not run yet, and the woken ones still tracked; all are told (orphaned()), so that the code after
  // their wait does not reach into the freed primitive.
  ~WaitList() {
    while (Node* n = nodes_.pop_front()) {
      n->parked_ = false;
      n->list_ = nullptr;
    }
    while (Node* n = left_.pop_front()) n->list_ = nullptr;
    while (Node* n = woken_.pop_front()) n->list_ = nullptr;
  }

  bool empty() const noexcept { return nodes_.empty(); }
  std::size_t size() const noexcept { return size_; }
  Node park(const char* what) noexcept { return Node(*this, what); }

  // The longest waiter, still parked (null if none).
  Node* front() noexcept { return nodes_.front(); }

  // Grants the first waiter and wakes it; false if nobody waits.
  bool wake_one(int status = 0) noexcept { return wake_front(status, false); }
  std::size_t wake_all(int status = 0) noexcept {
    std::size_t n = 0;
    while (wake_one(status)) ++n;
    return n;
  }
  // wake_one for a primitive that may still have news for the task after waking it (a barrier broken
  // between its release and the released task's turn), or whose woken task must learn that the primitive
  // was destroyed before it ran (orphaned()): the node stays reachable until its task runs (or longer, if
  // the awaiter's own await_resume leaves it linked: a Condition's, until wait() is over), and mark_woken()
  // changes the status of every such node.
  bool wake_one_tracked(int status) noexcept { return wake_front(status, true); }
  std::size_t wake_all_tracked(int status) noexcept {
    std::size_t n = 0;
    while (wake_one_tracked(status)) ++n;
    return n;
  }
  void mark_woken(int status) noexcept {
    woken_.for_each([status](Node& n) { n.status = status; });
  }
  // Links n, a node that never waits, among the tracked ones: the list's destruction orphans it, so its
  // owner learns whether the primitive still exists (n.orphaned()). Unlinked when n is destroyed.
  void watch(Node& n) noexcept { woken_.push_back(n); }
  // Visits the nodes cancelled while parked whose tasks have not run yet (a barrier still counts them).
  template <class F>
  void for_each_left(F&& f) {
    left_.for_each(f);
  }

 private:
  bool wake_front(int status, bool track) noexcept {
    Node* n = nodes_.pop_front();
    if (!n) return false;
    --size_;
    n->parked_ = false;
    n->granted = true;
    n->status = status;
    if (track) woken_.push_back(*n);  // (left by await_resume, or by the node's destruction)
    n->wake();
    return true;
  }

  IntrusiveList<Node> nodes_;  // parked, in arrival order
  IntrusiveList<Node> left_;   // cancelled while parked, their tasks not run yet
  IntrusiveList<Node> woken_;  // woken by wake_one_tracked, their tasks not run yet
  std::size_t size_ = 0;       // nodes_'s length (the list's own size() walks it)
};

}  // namespace corio::detail
