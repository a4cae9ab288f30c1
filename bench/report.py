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
            sym = None
            if " sym=" in line:  # a profile's symbol: last, and it may hold spaces
                line, sym = line.rstrip("\n").split(" sym=", 1)
            kv = dict(tok.split("=", 1) for tok in line.split()[1:])
            if sym is not None:
                kv["sym"] = sym
            impl = net_key(kv) if kv["workload"] in NET else kv["impl"]
            wl = kv["workload"] + (f"_{kv['kind']}" if "kind" in kv else "")  # w5_profile, w5_symbol
            runs.setdefault((wl, impl), []).append(kv)
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
    return [float(r[metric]) for r in runs.get((wl, impl), []) if metric in r]


# ---- network workloads (W4 echo, W5 HTTP, idle connections): every implementation against the raw floors

# (key, label): floors and corio run on both backends; a RESULT line's impl=floor|corio plus its backend=
# (epoll when absent: every run before the io_uring backend) make the key. asyncio and uvloop use epoll.
NET_IMPLS = [("floor_epoll", "floor, epoll"), ("floor_io_uring", "floor, io_uring"), ("corio_epoll", "corio, epoll"),
             ("corio_io_uring", "corio, io_uring"), ("asyncio", "asyncio"), ("uvloop", "uvloop")]
NET_LABEL = dict(NET_IMPLS)


def own_floor(impl):
    return "floor_io_uring" if impl.endswith("_io_uring") else "floor_epoll"


# workload -> (title, [(metric, label, unit, show ratios to the floors)])
NET = {
    "w4": ("W4 TCP echo: one process, one loop, 100 connections x N round trips of 64 B",
           [("rt_per_s", "round trips/s", "rt/s", True), ("ns_per_rt", "time per round trip", "ns", True),
            ("user_ns_per_rt", "user CPU per round trip", "ns", False),
            ("sys_ns_per_rt", "kernel CPU per round trip", "ns", False)]),
    "w5": ("W5 plaintext HTTP over the streams API: server on CPU 0, `wrk -t1 -c100` on CPU 1",
           [("rps", "requests/s", "req/s", True), ("cpu_us_per_req", "server CPU per request", "us", True),
            ("sched_us_per_req", "same, from schedstat (ns resolution)", "us", True)]),
    "idle": ("Idle connections: 10,000 connections to a corio server in one process, handlers in readline()",
             [("bytes_per_conn", "RSS per connection", "B", False),
              ("heap_bytes_per_conn", "heap in use per connection", "B", False),
              ("heap_free_bytes_per_conn", "malloc's free arena space per connection", "B", False),
              ("shared_bytes_per_conn", "shared pages per connection", "B", False)]),
}

# (workload, impl, metric, kind, value, reference impl, description)
#   kind "min_ratio": impl / reference >= value; "max_ratio": impl / reference <= value; "max": impl <= value
NET_GOALS = [
    ("w4", "corio_epoll", "rt_per_s", "min_ratio", 0.95, "floor_epoll", "round trips/s >= 0.95x the epoll floor's"),
    ("w4", "corio_io_uring", "rt_per_s", "min_ratio", 0.95, "floor_io_uring",
     "round trips/s >= 0.95x the io_uring floor's"),
    ("w5", "corio_epoll", "cpu_us_per_req", "max_ratio", 1.03, "floor_epoll",
     "server CPU per request <= 1.03x the epoll floor's"),
    ("w5", "corio_io_uring", "cpu_us_per_req", "max_ratio", 1.0, "floor_epoll",
     "server CPU per request <= the raw-epoll floor's"),
    ("idle", "corio_epoll", "bytes_per_conn", "max", 4096.0, None, "RSS per connection <= 4 KiB (4,096 B)"),
    ("idle", "corio_io_uring", "bytes_per_conn", "max", 4096.0, None, "RSS per connection <= 4 KiB (4,096 B)"),
]

# W5: where the server's CPU went (all per request, from the same wrk window).
W5_CPU = [("cpu_us_per_req", "whole process (us)"), ("loop_us_per_req", "loop thread (us)"),
          ("other_threads_us_per_req", "other threads of the process, incl. io-wq (us)"),
          ("extra_threads", "threads besides the loop seen during the run (peak)"),
          ("ksoftirqd_us_per_req", "ksoftirqd/0, the server CPU's softirq thread (us)"),
          ("user_us_per_req", "user (us)"), ("sys_us_per_req", "kernel (us)")]

NET_ABOUT = {
    "w4": "Sources: `bench/w4_echo.cpp` (corio, run with `CORIO_BACKEND=epoll` and `CORIO_BACKEND=io_uring`; "
          "the program reports the backend its loop ran on), `bench/w4_echo.py` (asyncio, uvloop), "
          "`bench/floor_w4_epoll.cpp` (epoll floor: one thread, non-blocking sockets, level-triggered epoll, one "
          "recv and one send per readiness event, no runtime), `bench/floor_w4_uring.cpp` (io_uring floor: raw "
          "liburing, one multishot recv per socket into a provided-buffer ring of 1024 x 4 KiB, sends as "
          "IORING_OP_SEND, one io_uring_submit_and_wait per loop iteration, corio's setup flags; the flags the "
          "kernel took are in its RESULT lines). Server and clients share one process and one loop; the client "
          "writes 64 B, drains, readexactly(64); the server readexactly(64), writes, drains. Timed from the first "
          "round trip to the last reply, all connections already open. N per client is in the RESULT lines "
          "below. Each row has its ratio to its own backend's floor and to the epoll floor. CPU per round trip: "
          "the process's user and kernel time (getrusage) over the timed span / round trips. Linux keeps the "
          "total exact but splits it between the two by clock-tick samples, so a part worth only a few dozen "
          "ticks per run (user time on io_uring) is coarse: read the medians.",
    "w5": "Sources: `bench/w5_http.cpp` (corio, once per backend), `bench/w5_http.py`, `bench/floor_w5_epoll.cpp`, "
          "`bench/floor_w5_uring.cpp` (multishot accept, multishot recv into provided buffers, IORING_OP_SEND) "
          "(readuntil(\"\\r\\n\\r\\n\"), fixed `Hello, World!` response, drain; no HTTP layer). Server pinned "
          "with `taskset -c 0`, load `taskset -c 1 wrk -t1 -c100 -dSs`; requests/s from wrk; CPU per request = "
          "server utime+stime (/proc/PID/stat fields 14+15, clock ticks: every thread of the process, also those "
          "that ended during the run) across the wrk run / requests wrk completed; the goals use this. Clock "
          "ticks are 10 ms, so a short run has only tens of ticks: the schedstat column (on-CPU nanoseconds of "
          "every server thread alive at the end, over the same window) is the finer cross-check.",
    "w5_cpu": "Kernel worker threads: io_uring's io-wq workers (`iou-wrk-*`) and SQPOLL threads (`iou-sqp-*`) are "
              "threads of the server process, so the whole-process figure above already counts them; this table "
              "splits it into the loop thread (/proc/PID/task/PID/stat) and the rest, and lists the threads seen "
              "(sampled every 0.5 s during the wrk run). Softirq work deferred to the server CPU's ksoftirqd/0 is "
              "in no process's time: its utime+stime over the window is the last column (wrk's side of loopback "
              "traffic can land there too, so it is an upper bound for the server's share). User and kernel: the "
              "whole process's utime and stime (fields 14 and 15); Linux keeps their sum exact but splits it by "
              "clock-tick samples, so read the medians.",
    "idle": "Source: `bench/idle_conns.cpp`, run once per backend: raw client sockets in a child process, the corio "
            "server in this one; (current RSS once every handler waits in readline() - RSS before the first "
            "connect) / N, buffers, stream state, handler frames and server bookkeeping included (on io_uring the "
            "provided-buffer ring is mapped at loop start, before the baseline, and its pages count only once "
            "data lands in them; kernel-side request memory is not in RSS). Each process needs N+100 descriptors. "
            "The other columns split the same before/after: heap in use is glibc's mallinfo2 uordblks + hblkhd "
            "(chunks handed out, headers and padding included, and mmapped blocks at their full size, touched or "
            "not: so it can exceed the RSS figure; compare it across backends), malloc's free arena space is "
            "fordblks (touched pages no allocation holds: fragmentation), shared pages is /proc/self/statm's "
            "third field (io_uring's rings are mapped from the kernel and are not counted there or in RSS).",
}


def nfmt(v, unit):
    return f"{v:.2f}" if v is not None and unit == "us" else fmt(v, unit)


def net_key(kv):
    if kv["impl"] in ("floor", "corio"):
        return f"{kv['impl']}_{kv.get('backend', 'epoll')}"
    return kv["impl"]


def paired_ratios(runs, wl, impl, ref, metric):
    """impl/ref per repetition: the k-th run of impl against the k-th run of ref (scripts/bench runs each
    backend's floor and corio back to back in every repetition), when both have the same number of runs."""
    a, b = values(runs, wl, impl, metric), values(runs, wl, ref, metric)
    if not a or len(a) != len(b) or not all(b):
        return []
    return [x / y for x, y in zip(a, b)]


def net_goal(med, goal, runs=None):
    """(value, ratio or None, ok or None, text) for one NET_GOALS row. A ratio goal is judged on the median of
    the paired ratios (each repetition's run against its floor's run just before it) when the runs pair up:
    this machine switches between a fast and a slow state for seconds at a time (both floors too), and a run
    is compared with the floor run next to it rather than with the median of runs made in other states. The
    ratio of the medians is shown beside it."""
    wl, impl, metric, kind, gval, ref, _ = goal
    v = med.get((impl, metric))
    if v is None:
        return v, None, None, "n/a (no data)"
    if kind == "max":
        ok = v <= gval
        return v, None, ok, "met" if ok else "**NOT met**"
    f = med.get((ref, metric))
    if not f:
        return v, None, None, "n/a (no floor)"
    pairs = paired_ratios(runs, wl, impl, ref, metric) if runs is not None else []
    r = statistics.median(pairs) if pairs else v / f
    how = f"median of {len(pairs)} paired ratios; ratio of medians {v / f:.3f}x" if pairs else "ratio of medians"
    ok = r >= gval if kind == "min_ratio" else r <= gval
    return v, r, ok, (f"met ({r:.3f}x: {how})" if ok else f"**NOT met** ({r:.3f}x: {how})")


def net_sections(runs, w, notes):
    """Writes the network sections; returns goal summary rows (workload, impl, desc, value, ratio, unit, ok)."""
    summary = []
    for wl, (title, metrics) in NET.items():
        have = any(runs.get((wl, impl)) for impl, _ in NET_IMPLS)
        wl_notes = notes.get(wl, [])
        if not have and not wl_notes:
            continue
        w(f"## {title}")
        w("")
        med = {}
        for impl, _ in NET_IMPLS:
            for metric, *_ in metrics + ([(m, None, None, None) for m, _ in W5_CPU] if wl == "w5" else []):
                vs = values(runs, wl, impl, metric)
                med[(impl, metric)] = statistics.median(vs) if vs else None
        head = "| implementation |"
        sep = "| --- |"
        for metric, label, unit, ratios in metrics:
            head += f" {label} ({unit}) |"
            sep += " ---: |"
            if ratios:
                head += " ratio to own backend's floor | ratio to epoll floor |"
                sep += " ---: | ---: |"
        head += " runs | goal | met? |"
        sep += " ---: | --- | --- |"
        w(head)
        w(sep)
        for impl, label in NET_IMPLS:
            if not runs.get((wl, impl)) and not any(g[0] == wl and g[1] == impl for g in NET_GOALS):
                continue  # (a goal's row stays, to show its missing data)
            row = f"| {label} |"
            for metric, _, unit, ratios in metrics:
                v = med[(impl, metric)]
                row += f" {nfmt(v, unit)} |"
                if ratios:
                    for ref in (own_floor(impl), "floor_epoll"):
                        f = med[(ref, metric)]
                        row += f" {v / f:.3f}x |" if v is not None and f else " n/a |"
            row += f" {len(runs.get((wl, impl), []))} |"
            goals = [g for g in NET_GOALS if g[0] == wl and g[1] == impl]
            if goals:
                texts = []
                for g in goals:
                    v, r, ok, text = net_goal(med, g, runs)
                    texts.append(text)
                    unit = [u for m, _, u, _ in metrics if m == g[2]][0]
                    summary.append((wl, impl, g[6], v, r, unit, ok))
                row += f" {'; '.join(g[6] for g in goals)} | {'; '.join(texts)} |"
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
        if wl == "w5" and any(med[(impl, "loop_us_per_req")] is not None for impl, _ in NET_IMPLS):
            w("### W5: where the server's CPU went (per request)")
            w("")
            w("| implementation | " + " | ".join(label for _, label in W5_CPU) + " |")
            w("| --- |" + " ---: |" * len(W5_CPU))
            for impl, label in NET_IMPLS:
                if not runs.get((wl, impl)):
                    continue
                cells = []
                for metric, _ in W5_CPU:
                    v = med[(impl, metric)]
                    cells.append("n/a" if v is None else (f"{v:.0f}" if metric == "extra_threads" else f"{v:.3f}"))
                w(f"| {label} | " + " | ".join(cells) + " |")
            w("")
            uring = [(label, med[(impl, "extra_threads")]) for impl, label in NET_IMPLS
                     if impl.endswith("_io_uring") and med[(impl, "extra_threads")] is not None]
            if uring:
                seen = [f"{label}: {x:.0f}" for label, x in uring if x]
                w("io-wq / kernel worker threads in the io_uring runs: " +
                  (f"seen ({'; '.join(seen)}; their names are in the notes above)." if seen else
                   "none appeared (no thread besides the loop thread in any io_uring server)."))
                w("")
            w(NET_ABOUT["w5_cpu"])
            w("")
            w5_profile_section(runs, w)
    uring_losses(runs, w)
    return summary


PROFILED = [("floor_epoll", "floor, epoll"), ("floor_io_uring", "floor, io_uring"), ("corio_epoll", "corio, epoll"),
            ("corio_io_uring", "corio, io_uring")]


def profile_of(runs, impl):
    """The W5 profile run of impl: (totals dict, [(us per request, samples, dso, symbol)]) or (None, [])."""
    prof = runs.get(("w5_profile", impl))
    if not prof:
        return None, []
    p = prof[-1]
    scale = 1e6 / float(p["hz"]) / float(p["requests"])
    syms = [(float(r["samples"]) * scale, int(r["samples"]), r["dso"], r["sym"])
            for r in runs.get(("w5_symbol", impl), [])]
    return p, syms


def w5_profile_section(runs, w):
    profiles = [(label, *profile_of(runs, impl)) for impl, label in PROFILED]
    measured = [p for _, p, _ in profiles if p]
    if not measured:
        return
    w("### W5: kernel and user space, sampled (perf record, one more run of each server)")
    w("")
    w("| implementation | kernel (us per request) | user space (us per request) | user-space share | samples |")
    w("| --- | ---: | ---: | ---: | ---: |")
    for label, p, _ in profiles:
        if p:
            k, u = float(p["kernel_us_per_req"]), float(p["user_us_per_req"])
            share = f"{u / (k + u):.1%}" if k + u > 0 else "n/a"
            w(f"| {label} | {k:.2f} | {u:.3f} | {share} | {int(p['samples']):,} |")
    w("")
    for label, _, syms in profiles:
        if not label.startswith("corio") or not syms:
            continue
        w(f"Top user-space symbols, {label} (us per request):")
        w("")
        w("| symbol | object | us per request | samples |")
        w("| --- | --- | ---: | ---: |")
        for us, n, dso, sym in syms:
            w(f"| `{sym}` | {dso} | {us:.3f} | {n} |")
        w("")
    w(f"`perf record -F {measured[0]['hz']} -p <server>` (cpu-clock samples of every server thread) for the length "
      "of one more wrk run like those above, then `perf report --sort dso,sym`. Samples in `[kernel.kallsyms]` "
      "are kernel time (system calls, io_uring's request processing, and the loopback TCP stack's softirq work "
      "done on the server's CPU); the rest is user space: the program, libc, liburing, the vDSO. Per request: "
      "samples / rate / (wrk's requests/s x the window). One run each, so these figures carry a single run's "
      "noise: they show where the time goes, the medians above show how much.")
    w("")


def med_of(runs, wl, impl, metric):
    vs = values(runs, wl, impl, metric)
    return statistics.median(vs) if vs else None


def spread(runs, wl, impl, ref, metric):
    """'; paired per repetition: median X, from A to B' or '' when the runs do not pair up."""
    pr = paired_ratios(runs, wl, impl, ref, metric)
    if len(pr) < 2:
        return ""
    return f"; paired per repetition: median {statistics.median(pr):.3f}x, from {min(pr):.3f}x to {max(pr):.3f}x"


def split_text(runs, wl, impl, ref, user, sys_, unit, digits):
    """'user space +a, kernel +b' for impl over ref, from the medians of the user/kernel columns."""
    u, ur = med_of(runs, wl, impl, user), med_of(runs, wl, ref, user)
    k, kr = med_of(runs, wl, impl, sys_), med_of(runs, wl, ref, sys_)
    if None in (u, ur, k, kr):
        return None, None, "user/kernel split not measured"
    du, dk = u - ur, k - kr
    return du, dk, f"user space {du:+.{digits}f} {unit}, kernel {dk:+.{digits}f} {unit}"


def uring_losses(runs, w):
    """Where corio on io_uring does worse than corio on epoll, or keeps less of what the io_uring floor gains
    over the epoll floor, with the numbers of this run and the measured split of the difference."""
    if not any(runs.get((wl, "corio_io_uring")) for wl in ("w4", "w5", "idle")):
        return
    w("## Where io_uring loses, and why")
    w("")
    w("Generated from the runs above. Listed: every measure where corio on io_uring does worse than corio on "
      "epoll, and every one where it keeps less than all of the io_uring floor's lead over the epoll floor "
      "(while above its own floor), each with this run's numbers and the measured split of the difference.")
    w("")
    items = []

    # W4 and W5: time or CPU per unit of work, lower is better.
    for wl, metric, what, unit, digits, user, sys_ in (
            ("w4", "ns_per_rt", "time per round trip", "ns", 0, "user_ns_per_rt", "sys_ns_per_rt"),
            ("w5", "cpu_us_per_req", "server CPU per request", "us", 2, "user_us_per_req", "sys_us_per_req")):
        fe, fu = med_of(runs, wl, "floor_epoll", metric), med_of(runs, wl, "floor_io_uring", metric)
        ce, cu = med_of(runs, wl, "corio_epoll", metric), med_of(runs, wl, "corio_io_uring", metric)
        if None in (fe, fu, ce, cu):
            continue
        name = wl.upper()
        v = lambda x: f"{x:,.{digits}f} {unit}"  # noqa: E731
        if cu > ce:
            items.append(f"**{name} {what}: corio is slower on io_uring than on epoll**: {v(cu)} against {v(ce)} "
                         f"({cu / ce:.3f}x{spread(runs, wl, 'corio_io_uring', 'corio_epoll', metric)}).")
        du_, dk_, own = split_text(runs, wl, "corio_io_uring", "floor_io_uring", user, sys_, unit, digits)
        de_, _, own_e = split_text(runs, wl, "corio_epoll", "floor_epoll", user, sys_, unit, digits)
        lead, kept = fe - fu, ce - cu
        # (corio at or under its own io_uring floor loses nothing to io_uring, whatever the epoll side did)
        if lead > 0 and kept < lead and cu > fu:
            text = (f"**{name} {what}: corio keeps {kept / lead:.0%} of io_uring's lead**: the io_uring floor needs "
                    f"{v(fu)} against the epoll floor's {v(fe)} ({lead:+,.{digits}f} {unit} saved), corio {v(cu)} "
                    f"against {v(ce)} ({kept:+,.{digits}f} {unit}). Over its own floor corio on io_uring adds "
                    f"{v(cu - fu)} ({cu / fu:.3f}x{spread(runs, wl, 'corio_io_uring', 'floor_io_uring', metric)}), "
                    f"{own}; on epoll it adds {v(ce - fe)} ({ce / fe:.3f}x), {own_e}.")
            if wl == "w5":
                pc, pf = profile_of(runs, "corio_io_uring")[0], profile_of(runs, "floor_io_uring")[0]
                if pc and pf:
                    text += (f" Sampled by perf (one run each): user space {float(pc['user_us_per_req']):.3f} us "
                             f"against the floor's {float(pf['user_us_per_req']):.3f} us, kernel "
                             f"{float(pc['kernel_us_per_req']):.2f} us against {float(pf['kernel_us_per_req']):.2f} "
                             "us.")
            if du_ is not None and dk_ is not None:
                if du_ >= dk_:
                    text += (" So the extra is mostly corio's own user-space work (the loop turn, resuming the "
                             "coroutines waiting on each read and write, the stream's buffering, copying out of the "
                             "provided buffers" + ("; its top functions are in the W5 profile above" if wl == "w5"
                                                    else "") + "). ")
                    if de_ is not None and du_ <= de_ * 1.25:
                        text += (f"That work costs no more on io_uring than on epoll ({du_:+,.{digits}f} against "
                                 f"{de_:+,.{digits}f} {unit} over each floor), but the io_uring floor's total is "
                                 "smaller and spends almost nothing in user space, so the same work is a bigger "
                                 "share of it.")
                    elif de_ is not None:
                        text += (f"On io_uring it costs more than on epoll ({du_:+,.{digits}f} against "
                                 f"{de_:+,.{digits}f} {unit} over each floor).")
                else:
                    text += (" So most of the extra is in the kernel: corio asks the kernel for more work per "
                             "request than the floor does.")
            items.append(text)

    # W5 throughput (wrk-bound: the server is not saturated, so this follows the load generator as much as
    # the server).
    re_, ru = med_of(runs, "w5", "corio_epoll", "rps"), med_of(runs, "w5", "corio_io_uring", "rps")
    cu5 = med_of(runs, "w5", "corio_io_uring", "cpu_us_per_req")
    if re_ and ru and ru < re_:
        busy = f" (busy {ru * cu5 / 1e6:.0%} of the time on io_uring)" if cu5 else ""
        items.append(f"**W5 requests/s**: {ru:,.0f} on io_uring against {re_:,.0f} on epoll ({ru / re_:.3f}x"
                     f"{spread(runs, 'w5', 'corio_io_uring', 'corio_epoll', 'rps')}). wrk, alone on the other "
                     f"CPU, sets the pace and the server has time to spare{busy}, so the server CPU per request "
                     "above, not requests/s, is the measure of the server.")
    # W4 throughput
    te, tu = med_of(runs, "w4", "corio_epoll", "rt_per_s"), med_of(runs, "w4", "corio_io_uring", "rt_per_s")
    if te and tu and tu < te:
        items.append(f"**W4 round trips/s**: {tu:,.0f} on io_uring against {te:,.0f} on epoll ({tu / te:.3f}x"
                     f"{spread(runs, 'w4', 'corio_io_uring', 'corio_epoll', 'rt_per_s')}).")

    # Idle connections: memory.
    me, mu = med_of(runs, "idle", "corio_epoll", "bytes_per_conn"), med_of(runs, "idle", "corio_io_uring",
                                                                              "bytes_per_conn")
    if me is not None and mu is not None and mu > me:
        text = f"**Idle connections: RSS per connection**: {mu:,.0f} B on io_uring against {me:,.0f} B on epoll " \
               f"({mu - me:+,.0f} B)."
        parts = []
        for metric, label in (("heap_bytes_per_conn", "heap in use"),
                              ("heap_free_bytes_per_conn", "malloc's free arena space"),
                              ("shared_bytes_per_conn", "shared pages")):
            a, b = med_of(runs, "idle", "corio_io_uring", metric), med_of(runs, "idle", "corio_epoll", metric)
            if a is not None and b is not None:
                parts.append(f"{label} {a - b:+,.0f} B")
        if parts:
            text += (" Per connection, io_uring against epoll: " + ", ".join(parts) + ". The extra heap in use "
                     "is the backend's record per descriptor, about twice the size of epoll's: besides the waiting "
                     "reads it holds the queue of chunks a multishot receive delivered before anyone read them, the "
                     "accept queue and the requests still in the ring (epoll's is two waiter lists and readiness "
                     "flags), laid out on 64-byte cache lines (in pages of 64 records, so the alignment costs no "
                     "padding per record). The free arena space is memory freed during the burst of connections "
                     "and not reused yet, held by no connection. The kernel side of each armed multishot receive "
                     "is not in RSS at all, on either backend's figure.")
        items.append(text)

    # Kernel worker threads (Boost.Asio's maintainer saw higher total CPU from them).
    xs = values(runs, "w5", "corio_io_uring", "extra_threads")
    os_ = values(runs, "w5", "corio_io_uring", "other_threads_us_per_req")
    if xs:
        if max(xs) > 0 or (os_ and max(os_) > 0):
            o = statistics.median(os_) if os_ else 0.0
            items.append(f"**Kernel worker threads**: corio's io_uring server ran up to {max(xs):.0f} thread(s) "
                         f"besides the loop (median peak {statistics.median(xs):.0f}), using {o:.3f} us per request "
                         "(median).")
        else:
            w("Kernel worker threads (io-wq, SQPOLL) are not among the losses: none appeared in any io_uring run "
              "(W5 table above: 0 threads besides the loop, 0 us of other threads' CPU), since every request "
              "here completes inline (sockets, multishot receive, no blocking file I/O) and SQPOLL is not used.")
            w("")
    if items:
        for it in items:
            w(f"- {it}")
    else:
        w("io_uring lost nowhere in this run.")
    w("")


def net_all_runs(runs, w):
    for wl, (title, metrics) in NET.items():
        extra = [(m, None, "" if m == "extra_threads" else "us", None) for m, _ in W5_CPU
                 if m != "cpu_us_per_req"] if wl == "w5" else []
        for metric, label, unit, _ in metrics + extra:
            for impl, ilabel in NET_IMPLS:
                vs = values(runs, wl, impl, metric)
                if vs:
                    w(f"| {wl.upper()} | {ilabel} | {metric} | {', '.join(nfmt(v, unit) for v in vs)} |")


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


def bare_line(runs, wl, metrics):
    """A sentence on the bare C++20 ready-queue loop measured in this run, with corio's ratio to it (the issue
    sets its goals on another machine; this shows where the bare loop stands on this one), or "" if not run.
    metrics: [(metric, unit text)]."""
    parts = []
    for metric, unit in metrics:
        b = values(runs, wl, "bare", metric)
        c = values(runs, wl, "corio", metric)
        if not b:
            continue
        mb = statistics.median(b)
        text = f"{fmt(mb, '')} {unit}"
        if c:
            text += f" (corio {statistics.median(c) / mb:.2f}x that)"
        parts.append(text)
    if not parts:
        return ""
    runs_n = len(values(runs, wl, "bare", metrics[0][0]))
    return ("Bare C++20 ready-queue loop measured in this run (`bench/bare_loop.cpp`: minimal promise, frames "
            f"from operator new, a vector of handles as the ready queue; median of {runs_n}): " + "; ".join(parts) + ".")


def floor_line(runs):
    """A sentence on the W1 floor measured in this run (`corio_bench_bare_loop w1floor`): each task's least
    state fused into its frame, the smallest any design of corio's tasks could be on this compiler; "" if not
    run."""
    ns = values(runs, "w1", "floor", "ns_per_task")
    mb = values(runs, "w1", "floor", "peak_rss_mb")
    frame = values(runs, "w1", "floor", "frame_bytes")
    if not ns or not mb:
        return ""
    mns, mmb = statistics.median(ns), statistics.median(mb)
    size = f" (frames of {fmt(statistics.median(frame), '')} B)" if frame else ""
    return ("W1 floor measured in this run (`bench/bare_loop.cpp`, `w1floor`: the bare loop whose promise holds "
            "only the fields an asyncio Task cannot do without, packed (ready-queue link, the waiter cancel() "
            "reaches, the exception, the done-watchers, a 32-bit id, 16-bit flags and reference count, its index "
            "in a vector of all tasks), fused into the frame, frames from a headerless bump allocator, no code run "
            "for them; a floor under what a corio task could cost on this compiler; median of "
            f"{len(ns)}): {fmt(mns, '')} ns/task and {fmt(mmb, '')} MB "
            f"peak RSS{size}. Against the goals: time {'within' if mns <= 60.0 else 'above'} 60 ns, memory "
            f"{'within' if mmb <= 100.0 else 'above'} 100 MB.")


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
    if line := bare_line(runs, "w3", [("ns_per_hop", "ns/hop")]):
        w(line)
        w("")
    return summary


def w3_all_runs(runs, w):
    for metric, label, unit in W3_METRICS:
        for impl in IMPLS + ["bare"]:
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
            summary.append((wl, label, c, unit, goal, None if c is None else c <= goal))
            w(f"| {label} ({unit}) | {fmt(c, unit)} | {fmt(med['asyncio'], unit)} | {fmt(med['uvloop'], unit)} "
              f"| {ratio(med['asyncio'])} | {ratio(med['uvloop'])} | <= {fmt(goal, unit)} | {met} |")
        w("")
        w("Peers quoted from the issue, not measured in this run: " +
          "; ".join(f"{name} {num}" for name, num in QUOTED[wl]) + ".")
        w("")
        if wl == "w1" and (line := bare_line(runs, "w1", [("ns_per_task", "ns/task"), ("peak_rss_mb", "MB peak RSS")])):
            w(line)
            w("")
        if wl == "w1" and (line := floor_line(runs)):
            w(line)
            w("")
    net_summary = net_sections(runs, w, parse_notes(raw))
    sync_summary = w3_section(runs, w)
    w("## Goals")
    w("")
    for wl, label, c, unit, goal, ok in summary:
        state = "no data" if ok is None else ("met" if ok else "MISSED")
        w(f"- {wl.upper()} {label}: {fmt(c, unit)} {unit} against <= {fmt(goal, unit)} {unit}: **{state}**")
    for wl, impl, desc, v, r, unit, ok in net_summary:
        state = "no data" if ok is None else ("met" if ok else "MISSED")
        got = "no data" if v is None else f"{nfmt(v, unit)} {unit}" + (f", {r:.3f}x" if r is not None else "")
        w(f"- {wl.upper()} {NET_LABEL[impl]}: {desc}: {got}: **{state}**")
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
        for impl in IMPLS + ["bare", "floor"]:
            vs = values(runs, mwl, impl, metric)
            if impl in ("bare", "floor") and not vs:
                continue
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
