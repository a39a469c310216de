"""The observed-status snapshot: written by the running loop, read by `fleet status` and `fleet ui`.

`observe_view` observes and plans as `fleet diff` does (nothing written) and puts the
result in one JSON-ready dict: every agent's status row, the plan, spend against each
budget, caps in use, the sessions seen alive. The loop writes it after each tick
(`write_view`, store/observed.py); `read_view(file)` gives it back only while it can be
trusted, and otherwise says why not:

- a loop is running for the file (its marker's pid is alive with the recorded start time);
- the file has the same bytes the loop last read;
- every session the loop saw alive is still alive (one psutil call each).

So a reader costs a few small file reads and one liveness check per running session,
instead of a `git status` and a `git rev-list` per worktree. The reader's liveness check
reads `/proc/<pid>/stat` itself (`running`), as psutil would, since importing psutil
costs a third of a 1,000-agent read; psutil is what it falls back to where there is no /proc.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..observe.liveness import running
from ..store import clock
from ..store.observed import StatusStore, file_digest, read_pointer, write_pointer

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..spec.loader import LoadedFleet
    from .status_rows import FleetView

BY_LOOP = "loop"


def observe_view(loaded: LoadedFleet, *, by: str, view: Callable[[], FleetView] | None = None) -> dict[str, Any]:
    """Observe and plan now (read-only) and return the snapshot dict. `view`: the tick's own
    post-tick observation, shared with the notifier (one observation per tick, not one each)."""
    from .status_rows import fleet_view

    status, observed, plan = view() if view is not None else fleet_view(loaded)
    spec = loaded.fleet.spec
    running = [r for r in status.agents if r.phase == "Running"]
    by_tier: dict[str, int] = {}
    for r in running:
        if r.tier:
            by_tier[r.tier] = by_tier.get(r.tier, 0) + 1
    sessions = {n: [a.record.pid, a.record.create_time] for n, a in observed.agents.items()
                if a.alive and a.record is not None and a.record.pid}
    return {
        "apiVersion": "fleet/v1alpha1", "kind": "FleetStatus", "fleet": loaded.name,
        "file": str(Path(os.path.realpath(loaded.path))), "fileDigest": file_digest(loaded.path),
        "observedAt": clock.now_iso(), "observedBy": by,
        "spendTodayUsd": status.spend_today_usd, "budgetUsdPerDay": status.budget_usd_per_day,
        "spendTodayByTier": status.spend_today_by_tier, "budgetUsdPerDayByTier": dict(spec.budget.perTier),
        "caps": {"fleet": {"maxRunning": spec.concurrency.maxRunning, "running": len(running)},
                 "tiers": {name: {"maxRunning": t.maxRunning, "running": by_tier.get(name, 0)}
                           for name, t in spec.tiers.items()}},
        "plan": plan.to_json(),
        "notifyFailures": _notify_failures(loaded),
        "sessions": sessions,
        "agents": [asdict(r) for r in status.agents],
    }


def _notify_failures(loaded: LoadedFleet) -> list[dict[str, Any]]:
    from .notify import notify_failures

    return notify_failures(loaded)


def history_point(view: dict[str, Any]) -> dict[str, Any]:
    phases: dict[str, int] = {}
    for a in view["agents"]:
        phases[a["phase"]] = phases.get(a["phase"], 0) + 1
    return {"at": view["observedAt"], "spendTodayUsd": view["spendTodayUsd"],
            "spendTodayByTier": view["spendTodayByTier"], "phases": phases}


def status_store(loaded: LoadedFleet) -> StatusStore:
    from ..engines import engine_for
    from ..observe.snapshot import fleet_home

    return StatusStore(fleet_home(engine_for(loaded).repo), loaded.name)


def write_view(loaded: LoadedFleet, store: StatusStore, *,
               observed: Callable[[], FleetView] | None = None) -> dict[str, Any]:
    """Observe (or take `observed`), then write the snapshot, one history line and the file's pointer."""
    view = observe_view(loaded, by=BY_LOOP, view=observed)
    store.write_snapshot(view)
    store.append_history(history_point(view))
    write_pointer(loaded.path, loaded.name, store.home)
    return view


def loop_marker(file: str, schedule: str) -> dict[str, Any]:
    from ..observe.processes import create_time

    pid = os.getpid()
    return {"pid": pid, "create_time": create_time(pid), "file": str(Path(os.path.realpath(file))),
            "startedAt": clock.now_iso(), "schedule": schedule, "lastTick": None, "nextTick": None}


def loop_alive(marker: dict[str, Any] | None) -> bool:
    return bool(marker) and running(marker.get("pid"), marker.get("create_time"))  # type: ignore[union-attr]


@dataclass
class Read:
    view: dict[str, Any] | None  # the snapshot, when it can be trusted
    why_not: str | None  # else: why fleet observes afresh
    loop: dict[str, Any] | None = None

    @property
    def age_seconds(self) -> float | None:
        return age_of(self.view) if self.view else None


def read_view(file: str | Path, store: StatusStore | None = None) -> Read:
    """The loop's snapshot of `file`'s fleet, if a loop is running and nothing it saw has moved."""
    store = store or read_pointer(Path(file))
    if store is None:
        return Read(None, "no loop has run for this file")
    marker = store.read_loop()
    if not loop_alive(marker):
        return Read(None, "no loop is running for this fleet")
    view = store.read_snapshot()
    if view is None:
        return Read(None, "the loop has not observed the fleet yet", marker)
    if view.get("fileDigest") != file_digest(Path(file)):
        return Read(None, "the file changed since the loop last read it", marker)
    for agent, (pid, created) in (view.get("sessions") or {}).items():
        if not running(pid, created):
            return Read(None, f"{agent}'s session ended since the loop's last observation", marker)
    return Read(view, None, marker)


def aged_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The snapshot's rows with their ages moved on to now (they were taken at `observedAt`)."""
    later = age_of(view)
    return [{**row, **{k: round(row[k] + later, 1) for k in ("age_seconds", "idle_seconds") if row.get(k) is not None}}
            for row in view.get("agents") or []]


def age_of(view: dict[str, Any]) -> float:
    return max(0.0, (clock.now() - datetime.fromisoformat(view["observedAt"])).total_seconds())
