"""Durations ("90s", "15m", "1h30m") and cron expressions as written in fleet.yaml."""
from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError with a hint for anything else."""
    if not re.fullmatch(DURATION_PATTERN, text.strip()):
        raise ValueError(f"invalid duration {text!r}: use a number and unit, e.g. 30s, 15m, 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))


def check_cron(expr: str) -> str:
    """Validate a 5-field crontab expression with APScheduler's own parser."""
    from apscheduler.triggers.cron import CronTrigger

    if len(expr.split()) != 5:
        raise ValueError(f"invalid cron {expr!r}: expected 5 fields (minute hour day month weekday)")
    try:
        CronTrigger.from_crontab(expr, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"invalid cron {expr!r}: {exc}") from None
    return expr
