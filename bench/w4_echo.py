"""W4 TCP echo in Python: one process, one loop. An echo server on 127.0.0.1:0 (readexactly(64), write,
drain) and C client connections (default 100), each doing N round trips of 64 bytes (write, drain,
readexactly(64)); as bench/w4_echo.cpp. All clients connect first; the timed part is the round trips.

Usage: /usr/bin/python3 w4_echo.py asyncio|uvloop [N [C]]   (default N = 10,000, C = 100)
Output: "RESULT workload=w4 impl=... n=... conns=... rt_per_s=... ns_per_rt=... user_ns_per_rt=...
sys_ns_per_rt=..." (the process's user and kernel CPU time over the timed part, per round trip)
"""
import asyncio
import resource
import sys
import time

MSG = b"x" * 64


async def echo(reader, writer):
    try:
        while True:
            data = await reader.readexactly(64)
            writer.write(data)
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass
    writer.close()


async def client(reader, writer, n):
    ok = 0
    for _ in range(n):
        writer.write(MSG)
        await writer.drain()
        ok += (await reader.readexactly(64)) == MSG
    writer.close()
    await writer.wait_closed()
    return ok


async def bench(n, conns):
    server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(conns)]
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    ok = sum(await asyncio.gather(*(client(r, w, n) for r, w in streams)))
    t1 = time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    server.close()
    await server.wait_closed()
    return t1 - t0, (ru1.ru_utime - ru0.ru_utime, ru1.ru_stime - ru0.ru_stime), ok


def main():
    impl = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    if impl == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    elif impl == "asyncio":
        factory = asyncio.new_event_loop
    else:
        sys.exit("usage: w4_echo.py asyncio|uvloop [N [C]]")
    with asyncio.Runner(loop_factory=factory) as runner:
        secs, (user, sys_), ok = runner.run(bench(n, conns))
    total = n * conns
    if ok != total:
        sys.exit(f"w4: {ok} of {total} replies were correct")
    print(f"RESULT workload=w4 impl={impl} n={n} conns={conns} rt_per_s={total / secs:.0f} "
          f"ns_per_rt={secs * 1e9 / total:.1f} user_ns_per_rt={user * 1e9 / total:.1f} "
          f"sys_ns_per_rt={sys_ * 1e9 / total:.1f}")


if __name__ == "__main__":
    main()
