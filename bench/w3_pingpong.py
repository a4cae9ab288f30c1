"""W3 ping-pong in Python: two tasks pass a token back and forth through two unbounded asyncio.Queue, N
round trips. Prints ns per hop.

A hop is one handoff of the token from one task to the other: the sender's `await q.put(token)` plus the
receiver's `await q.get()` returning it (including the receiver's wake-up and resumption by the loop). One
round trip (ping -> pong -> ping) is two hops, so a run makes 2 * N hops and ns_per_hop = elapsed / (2 * N).
The clock (perf_counter_ns) starts before the two tasks are created and stops after both have finished,
inside one loop run. bench/w3_pingpong.cpp does exactly the same. cpu_ns_per_hop is the process CPU time
(time.process_time_ns) over the same span.

Usage: /usr/bin/python3 w3_pingpong.py asyncio|uvloop [N]   (default N = 1,000,000 round trips)
Output: "RESULT workload=w3 impl=... n=... hops=... ns_per_hop=... cpu_ns_per_hop=..."
"""
import asyncio
import sys
import time


async def ping(out, inq, n):
    token = 0
    for _ in range(n):
        await out.put(token)
        token = await inq.get()
        token += 1
    return token


async def pong(inq, out, n):
    token = 0
    for _ in range(n):
        token = await inq.get()
        await out.put(token + 1)
    return token


async def bench(n):
    to_pong = asyncio.Queue()
    to_ping = asyncio.Queue()
    c0 = time.process_time_ns()
    t0 = time.perf_counter_ns()
    a = asyncio.create_task(ping(to_pong, to_ping, n))
    b = asyncio.create_task(pong(to_pong, to_ping, n))
    last = await a
    await b
    t1 = time.perf_counter_ns()
    c1 = time.process_time_ns()
    return (t1 - t0) / (2 * n), (c1 - c0) / (2 * n), last


def main():
    impl = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    if impl == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    elif impl == "asyncio":
        factory = asyncio.new_event_loop
    else:
        sys.exit("usage: w3_pingpong.py asyncio|uvloop [N]")
    with asyncio.Runner(loop_factory=factory) as runner:
        ns_per_hop, cpu_ns_per_hop, last = runner.run(bench(n))
    if last != 2 * n:
        sys.exit(f"w3: wrong final token {last}, expected {2 * n}")
    print(f"RESULT workload=w3 impl={impl} n={n} hops={2 * n} ns_per_hop={ns_per_hop:.2f} "
          f"cpu_ns_per_hop={cpu_ns_per_hop:.2f}")


if __name__ == "__main__":
    main()
