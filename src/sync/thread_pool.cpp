// The loop's thread pool for to_thread.
#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "../core/blocked_signals.hpp"
#include "corio/sync/thread.hpp"

namespace corio::detail {

struct ThreadPool::Impl {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> jobs;  // guarded by mu
  std::vector<std::thread> threads;        // guarded by mu
  std::size_t idle = 0;                    // guarded by mu
  std::size_t exited = 0;                  // threads that returned from work(); guarded by mu
  bool stopping = false;                   // guarded by mu

  void work() {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      ++idle;
      cv.wait(lock, [&] { return stopping || !jobs.empty(); });
      --idle;
      if (jobs.empty()) {  // stopping, and nothing left to do
        ++exited;
        return;
      }
      {
        std::function<void()> job = std::move(jobs.front());
        jobs.pop_front();
        lock.unlock();
        job();
      }  // The job (the callable, the arguments it did not take) goes here, without the lock, as CPython's
         // workers drop theirs: a slow destructor would stall every submit, and one that waits for the
         // loop (which may be submitting) would deadlock.
      lock.lock();
    }
  }
};

ThreadPool::ThreadPool(std::size_t max_threads)
    : impl_(new Impl), max_threads_(std::max<std::size_t>(1, max_threads)) {}

ThreadPool::~ThreadPool() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    threads.swap(impl_->threads);
  }
  impl_->cv.notify_all();
  for (auto& t : threads) t.join();
}

void ThreadPool::retire() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
}

bool ThreadPool::finished() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stopping && impl_->exited == impl_->threads.size();
}

void ThreadPool::submit(std::function<void()> job) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->jobs.push_back(std::move(job));
  if (impl_->idle < impl_->jobs.size() && impl_->threads.size() < max_threads_) {
    try {
      impl_->threads.reserve(impl_->threads.size() + 1);  // (a started thread must not be dropped)
      impl_->threads.push_back(start_thread_without_signals([impl = impl_.get()] { impl->work(); }));
    } catch (...) {
      // No new thread (the system refused one): a thread the pool has will take the job later; with none,
      // nobody would, so the job is withdrawn and the caller gets the error.
      if (impl_->threads.empty()) {
        impl_->jobs.pop_back();
        throw;
      }
    }
  }
  impl_->cv.notify_one();
}

std::thread start_thread_without_signals(std::function<void()> f) {
  sigset_t block, old;
  sigfillset(&block);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS}) sigdelset(&block, sig);
  ::pthread_sigmask(SIG_BLOCK, &block, &old);  // the new thread inherits this mask
  struct Restore {
    sigset_t* old;
    ~Restore() { ::pthread_sigmask(SIG_SETMASK, old, nullptr); }
  } restore{&old};
  // What this blocks beyond the mask the program asked for on the creating thread, for a child the new
  // thread forks (see blocked_signals.hpp).
  const sigset_t program = program_mask(old);
  sigset_t added;
  sigemptyset(&added);
  for (int sig = 1; sig < NSIG; ++sig)
    if (sigismember(&block, sig) == 1 && sigismember(&program, sig) == 0) sigaddset(&added, sig);
  return std::thread([f = std::move(f), added] {
    note_blocked_signals(added);
    f();
  });
}

namespace {
// One loop's pool, kept in the loop (EventLoop::local), so that loops taking turns on one thread do not
// share it: a second loop's to_thread must not join, or wait behind, the first loop's calls.
struct LoopPool {
  std::unique_ptr<ThreadPool> pool;
  // Pools replaced by set_to_thread_workers while the loop runs: their calls may still be running (and may
  // wait for the loop), so they are joined at the loop's shutdown, not on the spot.
  std::vector<std::unique_ptr<ThreadPool>> retired;
  bool closed = false;  // the loop's shutdown took the pools (a call made after that gets a new LoopPool)
};
constexpr char kPoolKey = 0;           // its address names the LoopPool among the loop's locals
thread_local std::size_t tl_size = 0;  // set_to_thread_workers: 0 is the default size

std::size_t default_workers() {
  unsigned cores = std::thread::hardware_concurrency();
  return std::min<std::size_t>(32, (cores ? cores : 1) + 4);
}

// The loop's LoopPool, or null.
LoopPool* find_pool(EventLoop& loop) {
  auto* lp = static_cast<LoopPool*>(loop.local(&kPoolKey).get());
  return lp && !lp->closed ? lp : nullptr;
}
}  // namespace

ThreadPool& loop_thread_pool() {
  EventLoop& loop = get_running_loop();
  LoopPool* lp = find_pool(loop);
  if (!lp) {
    auto fresh = std::make_shared<LoopPool>();
    loop.add_shutdown_hook([fresh]() -> std::function<void()> {
      // Detached here, on the thread closing the loop; joined by the function returned, maybe on another
      // thread: every call has returned before the loop closes.
      fresh->closed = true;
      std::shared_ptr<ThreadPool> pool = std::move(fresh->pool);
      auto retired = std::make_shared<std::vector<std::unique_ptr<ThreadPool>>>(std::move(fresh->retired));
      fresh->retired.clear();
      return [pool = std::move(pool), retired = std::move(retired)]() mutable {
        pool.reset();
        retired->clear();
      };
    });
    loop.local(&kPoolKey) = fresh;
    lp = fresh.get();
  }
  if (!lp->pool) lp->pool = std::make_unique<ThreadPool>(tl_size ? tl_size : default_workers());
  return *lp->pool;
}

}  // namespace corio::detail

namespace corio {

void set_to_thread_workers(std::size_t n) {
  detail::tl_size = n;
  std::size_t effective = n ? n : detail::default_workers();
  detail::LoopPool* lp = detail::LoopCore::running_
                             ? detail::find_pool(EventLoop::from_core(*detail::LoopCore::running_))
                             : nullptr;
  if (lp && lp->pool && lp->pool->max_threads() != effective) {
    // Resized while a loop runs: a new pool applies from the next call. The old one finishes its calls and
    // its threads exit; it is joined once they all have (here, at a later resize), or when the loop shuts
    // down (joining a thread still in a call could block the loop on a call that waits for it).
    lp->pool->retire();
    lp->retired.push_back(std::move(lp->pool));
  }
  if (lp)
    std::erase_if(lp->retired, [](const std::unique_ptr<detail::ThreadPool>& p) { return p->finished(); });
}

}  // namespace corio
