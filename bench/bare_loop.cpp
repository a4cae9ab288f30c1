// The "bare C++20 ready-queue loop" that the W1 and W3 goals are set against, so that it runs on the same
// machine in the same run as corio: coroutines with a minimal promise (frames from operator new, no names,
// no cancellation, no introspection), a vector of handles as the ready queue, nothing else.
//
// Usage: corio_bench_bare_loop w1 [N]   N coroutines that return their index, all created, then run from the
//                                       ready queue and their results summed in order (default 1,000,000)
//        corio_bench_bare_loop w1floor [N]
//                                       W1 again, each coroutine carrying the fewest fields an asyncio Task
//                                       needs, in its own frame (no separate task state), frames carved from
//                                       a bump allocator without headers: a floor for any design of corio's
//                                       tasks on this compiler (see w1_floor below)
//        corio_bench_bare_loop w3 [N]   two coroutines pass a token back and forth N times through one-slot
//                                       channels, each hand-off a ready-queue push and pop (default
//                                       1,000,000)
// Output: "RESULT workload=w1 impl=bare n=... ns_per_task=... peak_rss_mb=...",
//         "RESULT workload=w1 impl=floor n=... ns_per_task=... peak_rss_mb=... frame_bytes=..." or
//         "RESULT workload=w3 impl=bare n=... hops=... ns_per_hop=..."
#include <sys/resource.h>

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

namespace {

std::vector<std::coroutine_handle<>> ready;  // the loop's ready queue (FIFO: run from head_ on)
std::size_t head = 0;

void run_ready() {
  while (head < ready.size()) ready[head++].resume();
  ready.clear();
  head = 0;
}

template <class T>
struct Coro {
  struct promise_type {
    T value{};
    Coro get_return_object() { return Coro{std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_value(T v) noexcept { value = v; }
    [[noreturn]] void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
};

struct Void {
  struct promise_type {
    Void get_return_object() { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    [[noreturn]] void unhandled_exception() noexcept { std::terminate(); }
  };
};

Coro<int> coro(int i) { co_return i; }

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

int w1(int n) {
  std::vector<Coro<int>> tasks;
  tasks.reserve(static_cast<std::size_t>(n));
  ready.reserve(static_cast<std::size_t>(n));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    tasks.push_back(coro(i));
    ready.push_back(tasks.back().h);  // "create_task": scheduled for the next turn
  }
  run_ready();
  std::int64_t sum = 0;
  for (auto& t : tasks) {
    sum += t.h.promise().value;
    t.h.destroy();
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (sum != static_cast<std::int64_t>(n) * (n - 1) / 2) {
    std::fprintf(stderr, "bare w1: wrong sum\n");
    return 1;
  }
  const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
  std::printf("RESULT workload=w1 impl=bare n=%d ns_per_task=%.1f peak_rss_mb=%.1f\n", n, ns / n,
              peak_rss_mb());
  return 0;
}

// A one-slot channel: put() stores the token and schedules the waiting getter; get() suspends until then.
struct Channel {
  long token = 0;
  bool full = false;
  std::coroutine_handle<> getter;
  void put(long v) {
    token = v;
    full = true;
    if (getter) {
      ready.push_back(getter);
      getter = nullptr;
    }
  }
  struct Get {
    Channel& c;
    bool await_ready() const noexcept { return c.full; }
    void await_suspend(std::coroutine_handle<> h) noexcept { c.getter = h; }
    long await_resume() noexcept {
      c.full = false;
      return c.token;
    }
  };
  Get get() { return Get{*this}; }
};

Void pinger(Channel& to, Channel& from, int n, long& last) {
  for (int i = 0; i < n; ++i) {
    to.put(i);
    last = co_await from.get();
  }
}

Void ponger(Channel& from, Channel& to, int n) {
  for (int i = 0; i < n; ++i) to.put(co_await from.get() + 1);
}

int w3(int n) {
  Channel ping, pong;
  long last = -1;
  const auto t0 = std::chrono::steady_clock::now();
  ponger(ping, pong, n);  // runs until its first get() suspends
  pinger(ping, pong, n, last);
  // The loop: run what is ready until nothing is (ready grows while it runs; it is a FIFO).
  while (head < ready.size()) {
    std::coroutine_handle<> h = ready[head++];
    if (head == ready.size()) {
      ready.clear();
      head = 0;
    }
    h.resume();
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (last != n) {
    std::fprintf(stderr, "bare w3: wrong last token %ld\n", last);
    return 1;
  }
  const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
  std::printf("RESULT workload=w3 impl=bare n=%d hops=%ld ns_per_hop=%.2f\n", n, 2L * n, ns / (2.0 * n));
  return 0;
}

// ---- W1 floor: a task's least state, fused into its frame ----
//
// corio keeps a task's state apart from its coroutine's frame, because a Task<T> is made before anyone knows
// whether it will be awaited in place or handed to create_task. Fusing them is the smallest a design could
// make a task: here every coroutine is a task root whose promise holds only the fields an asyncio Task
// cannot do without, packed as tight as we could (a 32-bit id, 16-bit flags and reference count; the list
// of all tasks a vector with each task's index, not links), and nothing else (no loop pointer, no creation
// site for "never awaited", no link to an awaiting coroutine, no virtual functions, no cancellation or
// done-callback code run). Frames come from a bump allocator with no per-block header, in 8-byte steps
// (corio's pool: 16). What this costs per task is a floor under what a corio task could cost on the same
// compiler.

char* floor_bump = nullptr;
char* floor_end = nullptr;
std::size_t floor_frame_bytes = 0;

struct FloorPromise;
std::vector<FloorPromise*> floor_all_tasks;  // every pending task: run() cancels them at exit; dump_tasks()

struct FloorPromise {
  FloorPromise* ready_next = nullptr;  // the loop's intrusive ready queue: scheduling never allocates
  void* waiter = nullptr;              // what the task is suspended at: cancel() and awaiting() reach it
  std::exception_ptr exc;              // what it failed with: rethrown to its awaiters; "never retrieved"
  void* watchers = nullptr;            // who is told when it is done: awaits of its handle, gather, callbacks
  std::uint32_t id = 0;                // "Task-N"
  std::uint16_t flags = 0;             // done / cancelled / queued / cancel requested ...
  std::uint16_t refs = 1;              // the loop's reference and each handle's
  std::uint32_t index = 0;             // its place in floor_all_tasks
  int value = 0;

  static void* operator new(std::size_t n) {
    n = (n + 7) & ~std::size_t{7};
    floor_frame_bytes = n;
    if (static_cast<std::size_t>(floor_end - floor_bump) < n) {
      constexpr std::size_t kChunk = std::size_t{64} << 20;  // never freed: the program ends
      floor_bump = static_cast<char*>(std::aligned_alloc(4096, kChunk));
      if (!floor_bump) std::abort();
      floor_end = floor_bump + kChunk;
    }
    void* p = floor_bump;
    floor_bump += n;
    return p;
  }
  static void operator delete(void*, std::size_t) noexcept {}

  struct FloorTask get_return_object() noexcept;
  std::suspend_always initial_suspend() noexcept { return {}; }
  std::suspend_always final_suspend() noexcept { return {}; }
  void return_value(int v) noexcept { value = v; }
  [[noreturn]] void unhandled_exception() noexcept { std::terminate(); }
};

struct FloorTask {
  using promise_type = FloorPromise;
  std::coroutine_handle<FloorPromise> h;
};

FloorTask FloorPromise::get_return_object() noexcept {
  return FloorTask{std::coroutine_handle<FloorPromise>::from_promise(*this)};
}

FloorTask floor_coro(int i) { co_return i; }

int w1_floor(int n) {
  FloorPromise* ready_head = nullptr;
  FloorPromise* ready_tail = nullptr;
  std::uint32_t next_id = 1;
  std::vector<std::coroutine_handle<FloorPromise>> handles;  // as W1 keeps its TaskHandles
  handles.reserve(static_cast<std::size_t>(n));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {  // "create_task": named, listed, scheduled
    const std::coroutine_handle<FloorPromise> h = floor_coro(i).h;
    FloorPromise& p = h.promise();
    p.id = next_id++;
    p.index = static_cast<std::uint32_t>(floor_all_tasks.size());
    floor_all_tasks.push_back(&p);
    (ready_tail ? ready_tail->ready_next : ready_head) = &p;
    ready_tail = &p;
    handles.push_back(h);
  }
  while (FloorPromise* p = ready_head) {  // the turn
    ready_head = p->ready_next;
    std::coroutine_handle<FloorPromise>::from_promise(*p).resume();
  }
  std::int64_t sum = 0;
  for (const auto h : handles) {  // the awaits: take the value, unlist, destroy
    FloorPromise& p = h.promise();
    sum += p.value;
    FloorPromise* last = floor_all_tasks.back();  // unlisted: the last task takes its place
    last->index = p.index;
    floor_all_tasks[p.index] = last;
    floor_all_tasks.pop_back();
    h.destroy();
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (sum != static_cast<std::int64_t>(n) * (n - 1) / 2) {
    std::fprintf(stderr, "floor w1: wrong sum\n");
    return 1;
  }
  const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
  std::printf("RESULT workload=w1 impl=floor n=%d ns_per_task=%.1f peak_rss_mb=%.1f frame_bytes=%zu\n", n,
              ns / n, peak_rss_mb(), floor_frame_bytes);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool is_w1 = argc > 1 && std::strcmp(argv[1], "w1") == 0;
  const bool is_w3 = argc > 1 && std::strcmp(argv[1], "w3") == 0;
  const bool is_floor = argc > 1 && std::strcmp(argv[1], "w1floor") == 0;
  const int n = argc > 2 ? std::atoi(argv[2]) : 1'000'000;
  if ((!is_w1 && !is_w3 && !is_floor) || n <= 0) {
    std::fprintf(stderr, "usage: %s w1|w1floor|w3 [N > 0]\n", argv[0]);
    return 2;
  }
  if (is_floor) return w1_floor(n);
  return is_w1 ? w1(n) : w3(n);
}
