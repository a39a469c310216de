"""The one clock fleet reads "now" from, with a testing hook.

Every time fleet writes into a record (started, finished, backoff deadlines, condition
transitions), every time it compares against one (backoff, timeout, stallAfter, the
budget's day) and every archive's name is read from `now()`. The environment variable
FLEET_CLOCK_OFFSET (seconds, fractional or negative) moves that clock: a test runs a pass
"ten minutes later" with FLEET_CLOCK_OFFSET=600 instead of sleeping, so no outcome depends
on how fast the machine is. Sessions inherit the variable, so the exit times their hosts
write agree with fleet's. File times (a log's mtime, read as a session's last progress) and
process start times stay the operating system's: an offset makes a session look idle for
longer, which is what a stall test wants. Not meant for production use.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

ENV = "FLEET_CLOCK_OFFSET"


def offset() -> float:
    """Seconds FLEET_CLOCK_OFFSET adds to the real clock (0 when unset)."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return 0.0
    try:
        return float(value)
    except ValueError:
        from ..errors import FleetError

        raise FleetError(f"{ENV}={value!r} is not a number of seconds",
                         hint=f"unset {ENV}; it is a testing hook") from None


def now() -> datetime:
    """This moment, aware, in UTC (moved by FLEET_CLOCK_OFFSET)."""
    return datetime.now(timezone.utc) + timedelta(seconds=offset())


def now_iso() -> str:
    """`now()` as records store it (ISO 8601, milliseconds)."""
    return now().isoformat(timespec="milliseconds")
