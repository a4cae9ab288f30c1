"""W1 spawn-and-await in Python: asyncio.create_task N coroutines that return their index, then await
each in order and check the sum. Prints ns per task (spawn + await only) and peak RSS.

Usage: /usr/bin/python3 w1_spawn.py asyncio|uvloop [N]   (default N = 1,000,000)
Output: "RESULT workload=w1 impl=... n=... ns_per_task=... peak_rss_mb=..."
"""
import asyncio
import resource
import sys
import time


async def f(i):
    return i


async def bench(n):
    t0 = time.perf_counter_ns()
    tasks = [asyncio.create_task(f(i)) for i in range(n)]
    total = 0
    for t in tasks:
        total += await t
    t1 = time.perf_counter_ns()
    return (t1 - t0) / n, total


def main():
    impl = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    if impl == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    elif impl == "asyncio":
        factory = asyncio.new_event_loop
    else:
        sys.exit("usage: w1_spawn.py asyncio|uvloop [N]")
    with asyncio.Runner(loop_factory=factory) as runner:
        ns_per_task, total = runner.run(bench(n))
    if total != n * (n - 1) // 2:
        sys.exit(f"w1: wrong sum {total}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(f"RESULT workload=w1 impl={impl} n={n} ns_per_task={ns_per_task:.1f} peak_rss_mb={peak_mb:.1f}")


if __name__ == "__main__":
    main()
