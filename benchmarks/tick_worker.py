"""A no-op tick of the running control loop, timed in-process.

`python -m benchmarks.tick_worker FLEET_FILE --repeat R --ticks T` runs one warm-up tick (two,
the racy window of the memo apart) of `reconciler.control.loop.ControlLoop`, then R timed
ones, then untimed ones up to T ticks in all (the loop's memory over a long run), and prints
JSON: per timed tick its wall and CPU time (this process plus the git children it waited
for) and whether it was a no-op; the RSS after the timed ticks and after all T, and the
process's peak RSS.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ticks", type=int, default=0, help="ticks in all, untimed after the timed ones")
    args = parser.parse_args(argv)

    import apscheduler.schedulers.blocking  # noqa: F401  - what `fleet reconcile --watch` loads
    import psutil

    from reconciler.control.loop import ControlLoop

    results: list[object] = []
    messages: list[str] = []
    # as `fleet reconcile --watch` makes it (its heap frozen after the first tick)
    loop = ControlLoop(args.file, report=messages.append, on_result=results.append, settle_heap=True)
    loop.tick()  # warm-up: imports, first read of everything
    # A running loop remembers between ticks what did not change (store/memo.py), but not what
    # changed within its racy window (2 s) of a read: the floor's sweep just before this ran
    # `git status` in every tree, refreshing each index. A loop's ticks are its interval apart
    # (60 s by default), so the timed ticks start once the window has passed, after a tick that
    # fills the memo. (Before the memo existed this wait changed nothing.)
    try:
        from reconciler.store.memo import RACY_NS
    except ImportError:  # a tree from before the memo (a before/after run)
        RACY_NS = 0
    if RACY_NS:
        time.sleep(RACY_NS / 1e9 + 0.2)
        loop.tick()
    ticks = []
    for _ in range(args.repeat):
        results.clear()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        code = loop.tick()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        noop = code == 0 and len(results) == 1 and not results[0].plan.has_changes  # type: ignore[attr-defined]
        ticks.append({"wall": wall, "cpu": cpu, "noop": noop, "code": code})
    rss_timed = psutil.Process().memory_info().rss
    for _ in range(max(0, args.ticks - 1 - args.repeat)):
        results.clear()
        loop.tick()
    rss_now = psutil.Process().memory_info().rss
    json.dump({"ticks": ticks, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "rss_timed_mb": rss_timed / 2**20, "rss_mb": rss_now / 2**20,
               "total_ticks": max(args.ticks, 1 + args.repeat), "messages": messages[-3:]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
