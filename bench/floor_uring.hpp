// What the two io_uring floor programs (floor_w4_uring.cpp, floor_w5_uring.cpp) share: the ring's sizes,
// error exits, the ring set up with corio's setup flags (dropped step by step, as src/io/uring_backend.cpp
// does), and a provided-buffer ring mapped and registered by hand. Raw liburing, no runtime: the floors
// measure what the kernel costs, so they must not use corio.
#pragma once

#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace floor_uring {

constexpr unsigned kEntries = 4096;
constexpr unsigned kBufCount = 1024;
constexpr unsigned kBufSize = 4096;
constexpr unsigned kBufGroup = 0;

[[noreturn]] inline void die(const char* what) {
  std::perror(what);
  std::exit(1);
}
[[noreturn]] inline void die_rc(const char* what, int rc) {
  std::fprintf(stderr, "%s: %s\n", what, std::strerror(-rc));
  std::exit(1);
}

// Initialises `ring` with the first setup flags the kernel accepts; returns their name.
inline const char* setup_ring(io_uring& ring) {
  struct Attempt {
    unsigned flags;
    const char* name;
  };
  const Attempt attempts[] = {
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "SINGLE_ISSUER|DEFER_TASKRUN"},
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN, "SINGLE_ISSUER|COOP_TASKRUN"},
      {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
      {0, "none"},
  };
  int rc = -EINVAL;
  for (const Attempt& a : attempts) {
    io_uring_params p{};
    p.flags = a.flags | IORING_SETUP_CQSIZE;
    p.cq_entries = 4 * kEntries;
    rc = io_uring_queue_init_params(kEntries, &ring, &p);
    if (rc == 0) return a.name;
    if (rc != -EINVAL) break;
  }
  die_rc("io_uring_queue_init_params", rc);
}

struct BufferRing {
  io_uring_buf_ring* br;
  char* bufs;  // kBufCount buffers of kBufSize
};

// liburing 2.3 has no io_uring_setup_buf_ring: map the ring and the buffers, then register the ring as
// group kBufGroup. The buffers are not added yet (the caller gives them to the ring).
inline BufferRing map_buffer_ring(io_uring& ring) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t br_bytes = (sizeof(io_uring_buf) * kBufCount + page - 1) / page * page;
  void* br = mmap(nullptr, br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  void* bufs = mmap(nullptr, std::size_t{kBufCount} * kBufSize, PROT_READ | PROT_WRITE,
                    MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (br == MAP_FAILED || bufs == MAP_FAILED) die("mmap");
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uintptr_t>(br);
  reg.ring_entries = kBufCount;
  reg.bgid = kBufGroup;
  if (int rc = io_uring_register_buf_ring(&ring, &reg, 0); rc != 0) die_rc("io_uring_register_buf_ring", rc);
  auto* ring_mem = static_cast<io_uring_buf_ring*>(br);
  io_uring_buf_ring_init(ring_mem);
  return BufferRing{ring_mem, static_cast<char*>(bufs)};
}

}  // namespace floor_uring
