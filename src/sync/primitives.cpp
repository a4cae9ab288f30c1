// Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier. Each waits through detail::WaitList; the
// pattern after every park is the same: on CancelledError, a grant that already arrived is passed on.
#include <algorithm>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "corio/core/errors.hpp"
#include "corio/core/log.hpp"
#include "corio/sync/barrier.hpp"
#include "corio/sync/condition.hpp"
#include "corio/sync/event.hpp"
#include "corio/sync/lock.hpp"
#include "corio/sync/semaphore.hpp"

namespace corio {

// ---------------------------------------------------------------- Lock

void Lock::release() {
  if (!locked_ || handing_) throw RuntimeError("Lock is not acquired");
  hand_on();
}

Task<LockGuard> Lock::scoped() {
  co_await acquire();
  co_return LockGuard(*this);
}

namespace {
// A guard's implicit release must not throw (a destructor): a lock released by hand in the meantime is
// reported in the log, as asyncio's `async with lock:` would raise RuntimeError at its end.
void release_from_guard(Lock& lock) noexcept {
  try {
    lock.release();
  } catch (const std::exception& e) {
    detail::log(std::string("LockGuard: ") + e.what() + " (released by hand inside the guard?)");
  }
}
}  // namespace

LockGuard& LockGuard::operator=(LockGuard&& o) noexcept {
  if (this != &o) {
    if (lock_) release_from_guard(*lock_);
    lock_ = std::exchange(o.lock_, nullptr);
  }
  return *this;
}

LockGuard::~LockGuard() {
  if (lock_) release_from_guard(*lock_);
}

void LockGuard::release() {
  if (lock_) std::exchange(lock_, nullptr)->release();
}

// ---------------------------------------------------------------- Event

void Event::set() noexcept {
  if (set_) return;
  set_ = true;
  waiters_.wake_all();
}

// ---------------------------------------------------------------- Condition

namespace {
// A condition waiter whose notification stays tracked (see WaitList::wake_one_tracked) until wait() is
// over, not only until it resumes: the condition destroyed at any point of the wait orphans it, so that
// neither the re-acquisition nor the passing on of the notification reaches into the freed condition.
struct ConditionNode : detail::WaitList::Node {
  using Node::Node;
  void await_resume() {
    if (!granted) ListNode::unlink();  // (from the list of those that left; a granted node stays tracked)
    throw_if_cancelled();
  }
};
}  // namespace

Task<> Condition::wait() {
  // The lock is reached through this copy, never through the condition, which may be destroyed once the
  // wait is notified, and only while lock_alive says it exists.
  Lock* const lock = lock_;
  if (!lock->locked()) throw RuntimeError("Condition::wait() without holding the lock");
  lock->release();
  // Linked into the lock's waiter list as a watch (it never waits), so that the lock's destruction orphans
  // it. The condition and its lock may go with their owner's frame while this wait is pending (a task that
  // failed, whose tasks run() then cancels): the wait then touches neither. A lock that lives on is
  // re-acquired as always, the condition gone or not (a caller's guard releases it after the wait).
  detail::WaitList::Node lock_alive(lock->waiters_, "condition's lock");
  lock->waiters_.watch(lock_alive);
  ConditionNode node(waiters_, "condition");
  // A notification this wait took (node.granted), held until wait() returns normally. If it ends otherwise
  // (CancelledError, or its frame destroyed: a generator thrown away mid-await), the notification goes to
  // the next waiter, as asyncio's wait() notifies another waiter whenever it does not return normally:
  // unless the condition is gone, and its waiters with it.
  struct PassOn {
    ConditionNode& node;
    ~PassOn() {
      if (node.granted && !node.orphaned()) node.list_->wake_one_tracked(0);
    }
  } pass_on{node};
  std::exception_ptr cancelled;
  try {
    co_await node;
  } catch (const CancelledError&) {
    cancelled = std::current_exception();
  }
  // Re-acquire the lock even when cancelled, as asyncio does: the caller's `finally: release()` relies on it.
  // Unless the lock is gone (then so is, most likely, whoever would release it).
  for (;;) {
    if (lock_alive.orphaned()) {
      if (cancelled) std::rethrow_exception(cancelled);
      throw RuntimeError("Condition::wait(): the lock was destroyed before the wait could re-acquire it");
    }
    try {
      co_await lock->acquire();
      break;
    } catch (const CancelledError&) {
      cancelled = std::current_exception();
    }
  }
  if (cancelled) std::rethrow_exception(cancelled);  // (a notification taken goes on: pass_on)
  node.granted = false;                              // returned normally: the notification is used
}

void Condition::notify(std::size_t n) {
  if (!lock_->locked()) throw RuntimeError("Condition::notify() without holding the lock");
  // Tracked: the woken waits learn it if this condition is destroyed before their wait() is over.
  for (std::size_t i = 0; i < n && waiters_.wake_one_tracked(0); ++i) {
  }
}

void Condition::notify_all() { notify(waiters_.size()); }

// ---------------------------------------------------------------- Semaphore

void Semaphore::release() {
  // The bound first, as asyncio's BoundedSemaphore: with a task waiting the value is 0, so only a bound of
  // 0 can be reached here, and then there is no permit to hand over.
  if (value_ >= bound_) throw Error("BoundedSemaphore released too many times");
  if (waiters_.wake_one_tracked(0)) return;  // (tracked: see give_back)
  ++value_;
}

// ---------------------------------------------------------------- Barrier

namespace {
// Node::status of a barrier waiter: its arrival index (>= 0), or kBroken.
constexpr int kBroken = -1;
}  // namespace

Barrier::Barrier(std::size_t parties) : parties_(parties) {
  if (parties == 0) throw Error("Barrier needs at least one party");
}

namespace {
struct BarrierNode : detail::WaitList::Node {
  BarrierNode(detail::WaitList& list, std::uint64_t cycle, std::uint64_t seq) noexcept
      : Node(list, "barrier"), cycle(cycle), seq(seq) {}
  const std::uint64_t cycle;  // the barrier's cycle_ at arrival
  const std::uint64_t seq;    // the barrier's arrivals_ at arrival: orders arrivals across the two lists
};
}  // namespace

Task<std::size_t> Barrier::wait() {
  if (broken_) throw BrokenBarrierError();
  if (count_ + 1 == parties_) {
    // The last arrival. Indices are handed out now, in order of arrival among the arrivals still counted:
    // the waiters still parked, and those cancelled whose tasks have not run yet (as asyncio, where such a
    // waiter keeps the index it took at arrival, since it leaves only when its step runs). A waiter that
    // left before (its arrival undone) leaves no gap: every cycle returns 0..parties-1, each once (asyncio
    // repeats an index then: its later arrivals take the count, which went down).
    std::size_t index = count_;
    std::vector<std::uint64_t> counted_gone;  // (almost always empty: no allocation)
    waiters_.for_each_left([&](detail::WaitList::Node& n) {
      auto& b = static_cast<BarrierNode&>(n);
      if (b.cycle == cycle_) counted_gone.push_back(b.seq);
    });
    std::sort(counted_gone.begin(), counted_gone.end());
    count_ = 0;
    ++cycle_;
    // Tracked: a reset or an abort before a released task runs still breaks its wait (as asyncio, where
    // the released waiters check the barrier's state when they resume: BROKEN or RESETTING raise).
    std::size_t i = 0;
    std::size_t before = 0;  // counted_gone's arrivals before the front waiter
    while (auto* n = static_cast<BarrierNode*>(waiters_.front())) {
      while (before < counted_gone.size() && counted_gone[before] < n->seq) ++before;
      waiters_.wake_one_tracked(static_cast<int>(i + before));
      ++i;
    }
    co_return index;
  }
  ++count_;
  BarrierNode node(waiters_, cycle_, arrivals_++);
  // Left before the barrier filled (CancelledError, or the frame destroyed: a generator thrown away
  // mid-await, a loop closed): the arrival is undone, unless a reset, an abort or a last arrival has
  // started a new cycle since (between the cancel and this step): that new count does not hold it.
  struct Leave {
    Barrier& b;
    BarrierNode& node;
    ~Leave() {
      if (!node.granted && !node.orphaned() && node.cycle == b.cycle_) --b.count_;  // (orphaned: b is gone)
    }
  } leave{*this, node};
  co_await node;
  if (node.status == kBroken) throw BrokenBarrierError();
  co_return static_cast<std::size_t>(node.status);
}

Task<> Barrier::reset() {
  waiters_.mark_woken(kBroken);
  waiters_.wake_all(kBroken);
  count_ = 0;
  ++cycle_;
  broken_ = false;
  co_return;
}

Task<> Barrier::abort() {
  broken_ = true;
  count_ = 0;
  ++cycle_;
  waiters_.mark_woken(kBroken);
  waiters_.wake_all(kBroken);
  co_return;
}

}  // namespace corio
