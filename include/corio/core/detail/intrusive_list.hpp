// A circular doubly-linked intrusive list. Every waiting primitive in corio keeps its waiters in one of
// these, so a waiter can unlink itself in O(1) when it is cancelled or destroyed.
#pragma once

#include <cstddef>

namespace corio::detail {

struct ListNode {
  ListNode* prev_ = nullptr;
  ListNode* next_ = nullptr;

  ListNode() = default;
  ListNode(const ListNode&) = delete;
  ListNode& operator=(const ListNode&) = delete;
  ~ListNode() { unlink(); }

  bool linked() const noexcept { return next_ != nullptr; }
  void unlink() noexcept {
    if (next_) {
      prev_->next_ = next_;
      next_->prev_ = prev_;
      prev_ = next_ = nullptr;
    }
  }
};

// A node of a list whose head is a single pointer (Linux's hlist): half the head of an IntrusiveList, for
// lists that every task carries. A node unlinks itself in O(1) through pprev_, the address of the pointer
// that points to it (the head, or the previous node's next_). New nodes go in front.
struct HListNode {
  HListNode* next_ = nullptr;
  HListNode** pprev_ = nullptr;

  HListNode() = default;
  HListNode(const HListNode&) = delete;
  HListNode& operator=(const HListNode&) = delete;
  ~HListNode() { unlink(); }

  bool linked() const noexcept { return pprev_ != nullptr; }
  void unlink() noexcept {
    if (pprev_) {
      *pprev_ = next_;
      if (next_) next_->pprev_ = pprev_;
      next_ = nullptr;
      pprev_ = nullptr;
    }
  }
  // Puts this (unlinked) node at the front of the list whose head is `head`.
  void link_front(HListNode*& head) noexcept {
    next_ = head;
    if (head) head->pprev_ = &next_;
    head = this;
    pprev_ = &head;
  }
};

// T must derive from ListNode. The list does not own its elements.
template <class T>
class IntrusiveList {
 public:
  IntrusiveList() noexcept { head_.prev_ = head_.next_ = &head_; }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;
  ~IntrusiveList() {
    // Elements outliving the list must not point into it.
    while (!empty()) head_.next_->unlink();
    head_.prev_ = head_.next_ = nullptr;
  }

  bool empty() const noexcept { return head_.next_ == &head_; }
  std::size_t size() const noexcept {
    std::size_t n = 0;
    for (const ListNode* p = head_.next_; p != &head_; p = p->next_) ++n;
    return n;
  }
  void push_back(T& x) noexcept { insert_before(&head_, &x); }
  void push_front(T& x) noexcept { insert_before(head_.next_, &x); }
  T* front() noexcept { return empty() ? nullptr : static_cast<T*>(head_.next_); }
  T* back() noexcept { return empty() ? nullptr : static_cast<T*>(head_.prev_); }
  T* pop_front() noexcept {
    T* x = front();
    if (x) x->unlink();
    return x;
  }

  template <class F>
  void for_each(F&& f) {
    for (ListNode* p = head_.next_; p != &head_;) {
      ListNode* next = p->next_;
      f(*static_cast<T*>(p));
      p = next;
    }
  }

 private:
  static void insert_before(ListNode* pos, ListNode* x) noexcept {
    x->prev_ = pos->prev_;
    x->next_ = pos;
    pos->prev_->next_ = x;
    pos->prev_ = x;
  }
  ListNode head_;
};

}  // namespace corio::detail
