"""W2 many sleepers in Python: N tasks that each await asyncio.sleep(1). Reports the wall time from the
first create_task until all are done, and (peak RSS - baseline RSS) / N, the baseline being the peak RSS
measured just before the first task is created (inside the running loop).

Usage: /usr/bin/python3 w2_sleepers.py asyncio|uvloop [N]   (default N = 100,000)
Output: "RESULT workload=w2 impl=... n=... wall_s=... bytes_per_task=... baseline_rss_mb=... peak_rss_mb=..."
"""
import asyncio
import resource
import sys
import time


def max_rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def sleeper():
    await asyncio.sleep(1)


async def bench(n):
    baseline = max_rss_kib()
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(sleeper()) for _ in range(n)]
    for t in tasks:
        await t
    t1 = time.perf_counter()
    return t1 - t0, baseline, max_rss_kib()


def main():
    impl = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    if impl == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    elif impl == "asyncio":
        factory = asyncio.new_event_loop
    else:
        sys.exit("usage: w2_sleepers.py asyncio|uvloop [N]")
    with asyncio.Runner(loop_factory=factory) as runner:
        wall, baseline, peak = runner.run(bench(n))
    per_task = (peak - baseline) * 1024.0 / n
    print(f"RESULT workload=w2 impl={impl} n={n} wall_s={wall:.4f} bytes_per_task={per_task:.1f} "
          f"baseline_rss_mb={baseline / 1024.0:.1f} peak_rss_mb={peak / 1024.0:.1f}")


if __name__ == "__main__":
    main()
