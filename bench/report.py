"""Writes bench/RESULTS.md from a scripts/bench run (called by scripts/bench; not meant to be run by hand).

Usage: report.py RAW_RESULTS MICRO_JSON OUT_MD
RAW_RESULTS holds the "RESULT key=value ..." lines the workload programs print, one per run.
MICRO_JSON is Google Benchmark's --benchmark_out JSON. Machine facts come from BENCH_* environment variables.
"""
import json
import os
import statistics
import sys

IMPLS = ["corio", "asyncio", "uvloop"]

# (workload, metric, label, unit, goal for corio, lower is better)
METRICS = [
    ("w1", "ns_per_task", "time per task (spawn + await)", "ns", 60.0),
    ("w1", "peak_rss_mb", "peak RSS", "MB", 100.0),
    ("w2", "wall_s", "wall time (first create -> all done)", "s", 1.05),
    ("w2", "bytes_per_task", "(peak RSS - baseline) / N", "B/task", 250.0),
]

TITLES = {
    "w1": "W1 spawn-and-await: 1,000,000 tasks that return their index, awaited in order",
    "w2": "W2 many sleepers: 100,000 tasks each sleeping 1 s",
}

# Quoted from the issue "Foundation / core runtime" (measured elsewhere, not in this run).
QUOTED = {
    "w1": [("asyncio", "~9,200 ns/task"), ("uvloop", "~9,100 ns/task"), ("Boost.Asio", "~570 ns/task"),
           ("tokio current_thread", "~200 ns/task"), ("bare C++20 ready-queue loop", "49 ns/task")],
    "w2": [("asyncio", "1,566 B/task, 2.3 s"), ("tokio", "1,426 B/task, 1.09 s"), ("Go", "2,721 B/task")],
}


def parse_raw(path):
    runs = {}  # (workload, impl) -> list of dicts
    with open(path) as f:
        for line in f:
            if not line.startswith("RESULT "):
                continue
            kv = dict(tok.split("=", 1) for tok in line.split()[1:])
            runs.setdefault((kv["workload"], kv["impl"]), []).append(kv)
    return runs


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "s":
        return f"{v:.3f}"
    if v >= 100 or v == int(v):
        return f"{v:,.0f}"
    return f"{v:.1f}"


def values(runs, wl, impl, metric):
    return [float(r[metric]) for r in runs.get((wl, impl), [])]


# ---- network workloads (W4 echo, W5 HTTP, idle connections): every implementation against the raw-epoll floor

NET_IMPLS = ["floor", "corio", "asyncio", "uvloop"]

# workload -> (title, [(metric, label, unit, higher is better)], goal metric, goal kind, goal value, description)
#   goal kind "floor_min": corio / floor >= value; "floor_max": corio / floor <= value; "max": corio <= value
NET = {
    "w4": ("W4 TCP echo: one process, one loop, 100 connections x N round trips of 64 B",
           [("rt_per_s", "round trips/s", "rt/s", True), ("ns_per_rt", "time per round trip", "ns", False)],
           "rt_per_s", "floor_min", 0.95, "round trips/s >= 0.95x the floor's"),
    "w5": ("W5 plaintext HTTP over the streams API: server on CPU 0, `wrk -t1 -c100` on CPU 1",
           [("rps", "requests/s", "req/s", True), ("cpu_us_per_req", "server CPU per request", "us", False),
            ("sched_us_per_req", "same, from schedstat (ns resolution)", "us", False)],
           "cpu_us_per_req", "floor_max", 1.03, "server CPU per request <= 1.03x the floor's"),
    "idle": ("Idle connections: 10,000 connections to a corio server in one process, handlers in readline()",
             [("bytes_per_conn", "RSS per connection", "B", False)],
             "bytes_per_conn", "max", 4096.0, "RSS per connection <= 4 KiB (4,096 B)"),
}

NET_ABOUT = {
    "w4": "Sources: `bench/w4_echo.cpp` (corio), `bench/w4_echo.py` (asyncio, uvloop), `bench/floor_w4_epoll.cpp` "
          "(floor: one thread, non-blocking sockets, level-triggered epoll, one recv and one send per readiness "
          "event, no runtime). Server and clients share one process and one loop; the client writes 64 B, "
          "drains, readexactly(64); the server readexactly(64), writes, drains. Timed from the first round "
          "trip to the last reply, all connections already open. N per client is in the RESULT lines below.",
    "w5": "Sources: `bench/w5_http.cpp`, `bench/w5_http.py`, `bench/floor_w5_epoll.cpp` (readuntil(\"\\r\\n\\r\\n\"), "
          "fixed `Hello, World!` response, drain; no HTTP layer). Server pinned with `taskset -c 0`, load "
          "`taskset -c 1 wrk -t1 -c100 -dSs`; requests/s from wrk; CPU per request = server utime+stime "
          "(/proc/PID/stat fields 14+15, clock ticks) across the wrk run / requests wrk completed; the goal uses "
          "this. Clock ticks are 10 ms, so a short run has only tens of ticks: the schedstat column (on-CPU "
          "nanoseconds of every server thread over the same window) is the finer cross-check.",
    "idle": "Source: `bench/idle_conns.cpp`: raw non-blocking client sockets, corio server in the same process; "
            "(current RSS once every handler waits in readline() - RSS before the first connect) / N, "
            "buffers, stream state, handler frames and server bookkeeping included. Needs 2N+100 descriptors.",
}


def nfmt(v, unit):
    return f"{v:.2f}" if v is not None and unit == "us" else fmt(v, unit)


def net_sections(runs, w, notes):
    """Writes the network sections; returns goal summary rows (workload, label, value, unit, goal, ok)."""
    summary = []
    for wl, (title, metrics, gmetric, gkind, gval, gdesc) in NET.items():
        have = any(runs.get((wl, impl)) for impl in NET_IMPLS)
        wl_notes = notes.get(wl, [])
        if not have and not wl_notes:
            continue
        w(f"## {title}")
        w("")
        med = {}
        for impl in NET_IMPLS:
            for metric, *_ in metrics:
                vs = values(runs, wl, impl, metric)
                med[(impl, metric)] = statistics.median(vs) if vs else None
        head = "| implementation |"
        sep = "| --- |"
        for metric, label, unit, _ in metrics:
            head += f" {label} ({unit}) | ratio to floor |"
            sep += " ---: | ---: |"
        head += " runs | goal (corio) | met? |"
        sep += " ---: | --- | --- |"
        w(head)
        w(sep)
        for impl in NET_IMPLS:
            if wl == "idle" and impl != "corio" and not runs.get((wl, impl)):
                continue
            row = f"| {impl} |"
            for metric, label, unit, _ in metrics:
                v = med[(impl, metric)]
                f = med[("floor", metric)]
                ratio = f"{v / f:.3f}x" if v is not None and f else "n/a"
                row += f" {nfmt(v, unit)} | {ratio} |"
            row += f" {len(runs.get((wl, impl), []))} |"
            if impl == "corio":
                v = med[("corio", gmetric)]
                f = med[("floor", gmetric)]
                if v is None:
                    met, ok = "n/a (no data)", None
                elif gkind == "max":
                    ok = v <= gval
                    met = "met" if ok else f"**NOT met** ({nfmt(v, 'B')} B)"
                elif not f:
                    met, ok = "n/a (no floor)", None
                else:
                    r = v / f
                    ok = r >= gval if gkind == "floor_min" else r <= gval
                    met = f"met ({r:.3f}x)" if ok else f"**NOT met** ({r:.3f}x)"
                row += f" {gdesc} | {met} |"
                summary.append((wl, gdesc, v, [u for m, _, u, _ in metrics if m == gmetric][0], gval, ok))
            else:
                row += " | |"
            w(row)
        w("")
        for note in wl_notes:
            w(f"- {note}")
        if wl_notes:
            w("")
        w(NET_ABOUT[wl])
        w("")
    return summary


def net_all_runs(runs, w):
    for wl, (title, metrics, *_rest) in NET.items():
        for metric, label, unit, _ in metrics:
            for impl in NET_IMPLS:
                vs = values(runs, wl, impl, metric)
                if vs:
                    w(f"| {wl.upper()} | {impl} | {metric} | {', '.join(nfmt(v, unit) for v in vs)} |")


def parse_notes(path):
    notes = {}  # workload -> list of free-text notes ("NOTE <workload> <text>" lines)
    with open(path) as f:
        for line in f:
            if line.startswith("NOTE "):
                _, wl, text = line.rstrip("\n").split(" ", 2)
                if text not in notes.setdefault(wl, []):
                    notes[wl].append(text)
    return notes


# ---- sync workloads (W3 queue ping-pong, sync micro-benchmarks)

W3_GOAL_NS = 20.0
W3_METRICS = [("ns_per_hop", "time per hop (wall)", "ns"), ("cpu_ns_per_hop", "CPU time per hop", "ns")]
# Quoted from the issue "sync primitives" (measured elsewhere, not in this run).
W3_QUOTED = [("asyncio", "~2,400 ns/hop"), ("uvloop", "~1,750"), ("Boost.Asio channels", "~206"), ("tokio", "~113"),
             ("Go", "~95"), ("bare C++20 ready-queue hop", "3.9"), ("direct coroutine hand-off", "1.2")]


def w3_section(runs, w):
    """Writes the W3 section; returns goal summary rows (workload, label, value, unit, goal, ok)."""
    if not any(runs.get(("w3", impl)) for impl in IMPLS):
        return []
    ns = [r.get("n") for r in runs.get(("w3", "corio"), [])][:1]
    w("## W3 ping-pong: two tasks pass a token back and forth through two unbounded queues")
    w("")
    w("| metric | corio | asyncio | uvloop | asyncio / corio | uvloop / corio | goal (corio) | met? |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    summary = []
    for metric, label, unit in W3_METRICS:
        med = {}
        for impl in IMPLS:
            vs = values(runs, "w3", impl, metric)
            med[impl] = statistics.median(vs) if vs else None
        c = med["corio"]

        def ratio(o):
            return "n/a" if o is None or not c else f"{o / c:.1f}x"

        if c is None:
            met, ok = "no data", None
        else:
            ok = c <= W3_GOAL_NS
            met = "met" if ok else f"**NOT met** ({fmt(c, unit)} ns > {fmt(W3_GOAL_NS, unit)} ns)"
        if metric == "ns_per_hop":
            summary.append(("w3", label, c, unit, W3_GOAL_NS, ok))
        w(f"| {label} ({unit}) | {fmt(c, unit)} | {fmt(med['asyncio'], unit)} | {fmt(med['uvloop'], unit)} "
          f"| {ratio(med['asyncio'])} | {ratio(med['uvloop'])} | <= {fmt(W3_GOAL_NS, unit)} | {met} |")
    w("")
    w(f"A hop is one handoff of the token from one task to the other: the sender's `co_await q.put(token)` (`await "
      f"q.put(token)` in Python) plus the receiver's `get()` returning it, including the receiver's wake-up and "
      f"resumption by the loop. Each run makes N = {ns[0] if ns else '?'} round trips (ping -> pong -> ping) = 2N "
      "hops; time per hop = elapsed / 2N, clock started before the two tasks are created and stopped after both "
      "finished (the same definition in `bench/w3_pingpong.cpp` and `bench/w3_pingpong.py`). Queues are "
      "unbounded, so put() never suspends and get() suspends whenever the queue is empty. The CPU row is the "
      "process CPU time over the same span: on this shared machine, wall time also holds time spent descheduled; "
      "the goal is judged on the wall-clock row.")
    w("")
    w("Peers quoted from the issue, not measured in this run: " +
      "; ".join(f"{name} {num}" for name, num in W3_QUOTED) + ".")
    w("")
    return summary


def w3_all_runs(runs, w):
    for metric, label, unit in W3_METRICS:
        for impl in IMPLS:
            vs = values(runs, "w3", impl, metric)
            if vs:
                w(f"| W3 | {impl} | {metric} | {', '.join(fmt(v, unit) for v in vs)} |")


MICRO_SYNC_WHAT = {
    "BM_SemaphoreUncontended": ("co_await acquire() + release(), permit free, nobody waiting", "acquire/release pair"),
    "BM_SemaphoreHandoff": ("Semaphore(1), Arg tasks looping acquire -> release: each release hands the permit "
                            "to the longest waiter", "handoff"),
    "BM_LockHandoff": ("two tasks looping acquire -> release on one Lock (strict FIFO: every release is a "
                       "handoff)", "handoff"),
    "BM_EventFanOut": ("Arg tasks parked in Event::wait(); one set() wakes all, iteration ends when the last has "
                       "run", "waiter woken"),
    "BM_QueuePutGetNoSuspend": ("co_await put() + co_await get() in one task, neither suspends", "put/get pair"),
}


def micro_sync_section(path, w):
    if not path or not os.path.exists(path):
        return
    with open(path) as f:
        mj = json.load(f)
    w("## Sync micro-benchmarks (Google Benchmark, corio only)")
    w("")
    w("`build/bench/bench/corio_bench_micro_sync` (source `bench/micro_sync.cpp`), each benchmark's whole loop "
      "inside one `corio::run`, helper tasks created before the timed loop; median of the repetitions. "
      "\"per item\" divides by the items one iteration handles (the unit is named in each row); CPU per item is "
      "Google Benchmark's 1 / items_per_second, wall per item scales it by real / CPU time.")
    w("")
    w("| benchmark | what one iteration does | item | wall per item (ns) | CPU per item (ns) | items/s (CPU) |")
    w("| --- | --- | --- | ---: | ---: | ---: |")
    rows = [b for b in mj.get("benchmarks", []) if b.get("aggregate_name") == "median"]
    if not rows:  # a single repetition reports no aggregates
        rows = [b for b in mj.get("benchmarks", []) if b.get("run_type", "iteration") == "iteration"]
    for b in rows:
        name = b["run_name"]
        what, item = MICRO_SYNC_WHAT.get(name.split("/")[0], ("", ""))
        ips = b.get("items_per_second")
        if ips and b.get("cpu_time"):
            cpu_item = 1e9 / ips
            wall_item = cpu_item * b["real_time"] / b["cpu_time"]
            w(f"| {name} | {what} | {item} | {wall_item:,.1f} | {cpu_item:,.1f} | {ips / 1e6:.1f} M/s |")
        else:
            w(f"| {name} | {what} | {item} | n/a | n/a | {b.get('error_message', '')} |")
    w("")


def main():
    raw, micro_json, out = sys.argv[1:4]
    runs = parse_raw(raw)
    env = os.environ.get
    lines = []
    w = lines.append
    w("# corio benchmark results")
    w("")
    w("Generated by `scripts/bench`; do not edit by hand (re-run the script). Numbers are medians over "
      f"{env('BENCH_REPS')} runs of each program, corio, Python asyncio and Python uvloop run in the same "
      "invocation, interleaved run by run. The machine is shared (2 cores, other builds may be running), so "
      "expect noise: compare medians, and look at the spread under \"All runs\".")
    w("")
    w(f"- Command: `{env('BENCH_COMMAND')}`")
    w(f"- Date: {env('BENCH_DATE')}")
    w(f"- corio commit: {env('BENCH_COMMIT')}")
    w(f"- CPU: {env('BENCH_CPU')}; {env('BENCH_CORES')} cores (nproc)")
    w(f"- Kernel: {env('BENCH_KERNEL')}")
    w(f"- Compiler: {env('BENCH_GXX')}; corio built with CMAKE_BUILD_TYPE=Release")
    w(f"- Python: {env('BENCH_PYTHON')} ({env('BENCH_PYTHON_PATH')}); uvloop {env('BENCH_UVLOOP')}")
    if env("BENCH_WRK"):
        w(f"- Load generator (W5): {env('BENCH_WRK')}")
    if env("BENCH_LOAD"):
        w(f"- Load average (uptime) at start / end: {env('BENCH_LOAD')}")
    if env("BENCH_ONLY"):
        w(f"- BENCH_ONLY={env('BENCH_ONLY')}: workloads outside it (and the micro-benchmarks, unless selected) "
          "are carried over from the previous run's raw results, not re-measured")
    w("")
    w("Ratios are other / corio: above 1 means corio is that many times faster (or smaller).")
    w("")
    summary = []
    for wl in ["w1", "w2"]:
        w(f"## {TITLES[wl]}")
        w("")
        w("| metric | corio | asyncio | uvloop | asyncio / corio | uvloop / corio | goal (corio) | met? |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for mwl, metric, label, unit, goal in METRICS:
            if mwl != wl:
                continue
            med = {}
            for impl in IMPLS:
                vs = values(runs, wl, impl, metric)
                med[impl] = statistics.median(vs) if vs else None
            c = med["corio"]

            def ratio(o):
                if o is None or not c:
                    return "n/a"
                return f"{o / c:.1f}x"

            if c is None:
                met = "no data"
            else:
                met = "yes" if c <= goal else f"**NO** ({fmt(c, unit)} {unit} > {fmt(goal, unit)} {unit})"
            summary.append((wl, label, c, unit, goal, c is not None and c <= goal))
            w(f"| {label} ({unit}) | {fmt(c, unit)} | {fmt(med['asyncio'], unit)} | {fmt(med['uvloop'], unit)} "
              f"| {ratio(med['asyncio'])} | {ratio(med['uvloop'])} | <= {fmt(goal, unit)} | {met} |")
        w("")
        w("Peers quoted from the issue, not measured in this run: " +
          "; ".join(f"{name} {num}" for name, num in QUOTED[wl]) + ".")
        w("")
    net_summary = net_sections(runs, w, parse_notes(raw))
    sync_summary = w3_section(runs, w)
    w("## Goals")
    w("")
    for wl, label, c, unit, goal, ok in summary:
        state = "met" if ok else "MISSED"
        w(f"- {wl.upper()} {label}: {fmt(c, unit)} {unit} against <= {fmt(goal, unit)} {unit}: **{state}**")
    for wl, desc, v, unit, goal, ok in net_summary:
        state = "no data" if ok is None else ("met" if ok else "MISSED")
        w(f"- {wl.upper()} {desc}: corio {nfmt(v, unit)} {unit}: **{state}**")
    for wl, label, c, unit, goal, ok in sync_summary:
        state = "no data" if ok is None else ("met" if ok else "MISSED")
        w(f"- {wl.upper()} {label}: {fmt(c, unit)} {unit} against <= {fmt(goal, unit)} {unit}: **{state}**")
    w("")

    w("## Core micro-benchmarks (Google Benchmark, corio only)")
    w("")
    w("`build/bench/bench/corio_bench_micro_core`, each benchmark's whole loop inside one `corio::run`; median "
      "of the repetitions. Time is per iteration; items/s counts tasks or callbacks where an iteration "
      "handles many (Arg = N).")
    w("")
    mj = {}
    if os.path.exists(micro_json):
        with open(micro_json) as f:
            mj = json.load(f)
    w("| benchmark | what one iteration does | time (ns) | CPU (ns) | items/s |")
    w("| --- | --- | ---: | ---: | ---: |")
    what = {
        "BM_AwaitReadyTask": "co_await a lazy Task that co_returns at once",
        "BM_CreateTaskAwait": "create_task + co_await the handle (one loop turn)",
        "BM_CreateTaskAwaitBatch": "create_task N, then await the N handles",
        "BM_SleepZeroYield": "co_await sleep(0s): one loop turn round trip",
        "BM_CallSoon": "call_soon N callbacks, then yield a turn so they run",
        "BM_TimerAddCancel": "call_later(10s) + TimerHandle::cancel, N other timers pending",
    }
    rows = [b for b in mj.get("benchmarks", []) if b.get("aggregate_name") == "median"]
    if not rows:  # a single repetition reports no aggregates
        rows = [b for b in mj.get("benchmarks", []) if b.get("run_type", "iteration") == "iteration"]
    for b in rows:
        name = b["run_name"]
        base = name.split("/")[0]
        ips = b.get("items_per_second")
        ips_s = f"{ips / 1e6:.1f} M/s" if ips else ""
        unit_scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
        w(f"| {name} | {what.get(base, '')} | {b['real_time'] * unit_scale:,.1f} | "
          f"{b['cpu_time'] * unit_scale:,.1f} | {ips_s} |")
    ctx = mj.get("context", {})
    if ctx.get("library_build_type") == "debug":
        w("")
        w("Google Benchmark reports that its library (Debian's libbenchmark) was built as debug; corio and the "
          "benchmark bodies are compiled in Release, and the timed loop only calls the inline KeepRunning().")
    w("")

    micro_sync_section(env("BENCH_MICRO_SYNC_JSON"), w)

    w("## All runs")
    w("")
    w("| workload | impl | metric | runs |")
    w("| --- | --- | --- | --- |")
    for mwl, metric, label, unit, goal in METRICS:
        for impl in IMPLS:
            vs = values(runs, mwl, impl, metric)
            w(f"| {mwl.upper()} | {impl} | {metric} | {', '.join(fmt(v, unit) for v in vs) or 'n/a'} |")
    net_all_runs(runs, w)
    w3_all_runs(runs, w)
    w("")
    w("Workload sources: `bench/w1_spawn.cpp`, `bench/w1_spawn.py`, `bench/w2_sleepers.cpp`, "
      "`bench/w2_sleepers.py`, `bench/micro_core.cpp`. W1 times only the spawn + await part with a steady "
      "clock inside the program; peak RSS is getrusage's ru_maxrss of the whole process. W2's baseline is "
      "ru_maxrss just before the first task is created, inside the running loop; the vector / list of "
      "handles is part of the per-task figure in every implementation.")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
