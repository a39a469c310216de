"""Is a recorded process still the one fleet started? Read from /proc, without psutil.

`fleet status` reading the loop's snapshot checks each live session this way: importing
psutil costs a third of a 1,000-agent read. observe/processes.py (psutil) is the one
observer of processes otherwise, and shares the start-time tolerance defined here.
"""
from __future__ import annotations

import os

CREATE_TIME_TOLERANCE = 0.05  # seconds; a start time has clock-tick resolution


def running(pid: int | None, created: float | None) -> bool:
    """`processes.is_alive` (`pid` runs, is not a zombie, and started at `created`),
    read from /proc/<pid>/stat as psutil reads it there: start time = its starttime in clock
    ticks after boot (/proc/stat btime). tests/test_status_plain.py compares the two."""
    if not pid or created is None:
        return False
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
    except FileNotFoundError:
        if not os.path.exists("/proc/self/stat"):  # no procfs (macOS, BSD): ask psutil
            from .processes import is_alive

            return is_alive(pid, created)
        return False  # no such process
    except (OSError, ValueError, IndexError, StopIteration):
        from .processes import is_alive

        return is_alive(pid, created)
    fields = stat[stat.rfind(b")") + 2:].split()  # the name, in parentheses, may hold anything
    started = float(fields[19]) / os.sysconf("SC_CLK_TCK") + boot
    return abs(started - created) <= CREATE_TIME_TOLERANCE and fields[0] != b"Z"
