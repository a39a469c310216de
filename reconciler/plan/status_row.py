"""One `fleet status` row, which group it is listed under, and how its ages read.

Pure and light: `fleet status` reading the loop's snapshot builds these rows from JSON and
groups them without loading the observer, the planner or a fleet file (plan/status.py
computes them from observed state and re-exports all of this).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any


@dataclass
class AgentStatus:
    agent: str
    declared: bool
    phase: str
    sync: str  # Synced | OutOfSync | Unknown
    tier: str | None
    runtime: str | None
    model: str | None
    branch: str | None
    worktree: str | None
    dirty: int | None
    ahead: int | None
    pid: int | None
    started_at: str | None
    finished_at: str | None
    age_seconds: float | None
    idle_seconds: float | None  # running sessions: time since their last sign of progress
    exit_code: int | None
    attempts: int
    cost_usd: float
    session_id: str | None
    spec_hash: str | None
    observed_generation: str | None
    reason: str | None
    conditions: list[dict[str, Any]] = field(default_factory=list)
    last_output: list[str] = field(default_factory=list)  # of a run fleet stopped (stalled, timed out)
    last_gate: dict[str, Any] | None = None
    node: str | None = None  # placement.engine ray: the node the session runs (or last ran) on
    reserved_usd: float | None = None  # a running session: what it reserved against the budgets (its cap)
    live_usd: float | None = None  # a running session: what its current run has spent so far (its log)
    cost_unknown: bool = False  # some run's cost could not be known: counted at its cap
    delivery: str | None = None  # spec.delivery: Queued 1 of 3, Delivered into X, Conflicted: FILES...
    behind_base: int | None = None  # commits on base its branch lacks (BehindBase), with spec.delivery
    group: str = ""  # GROUPS: where `fleet status` lists it (set by `status_rows`, from the fields above)


FIELDS = frozenset(f.name for f in fields(AgentStatus))


def row_from_json(data: dict[str, Any]) -> AgentStatus:
    """`AgentStatus(**data)`. A row with exactly the fields (as `asdict` wrote it into the loop's
    snapshot) gets them set directly, as __init__ would set them (it copies nothing), in a tenth
    of the time; any other dict goes through __init__ (defaults, or TypeError for an unknown key)."""
    if data.keys() == FIELDS:
        row = object.__new__(AgentStatus)
        row.__dict__.update(data)
        return row
    return AgentStatus(**data)


# The groups of `fleet status` (and the dashboard), in the order they are shown: what needs a
# person first, as in Claude Code's agent view (docs/output.md "The status table").
NEEDS_ATTENTION, WORKING, PENDING, DONE = "Needs attention", "Working", "Pending", "Done"
GROUPS = (NEEDS_ATTENTION, WORKING, PENDING, DONE)
# Conditions that, while True, put an agent that is not running under "Needs attention":
# it waits for something only a person (or money) can give.
ATTENTION_CONDITIONS = frozenset({"Stalled", "DeadlineExceeded", "BudgetExhausted", "StartFailed",
                                  "ExitRecordCorrupt", "CrashLoopBackOff", "CloneKept",
                                  "IntegrationFailed", "OutOfScope"})
# Condition type prefixes of the same kind (a pilot waiting for its go, a merge conflict)
ATTENTION_PREFIXES = ("Pilot", "Conflict", "Merge")


def group_of(row: AgentStatus) -> str:
    """Which group of the status view a row belongs to; pure, from the row alone."""
    if row.phase in ("Failed", "Blocked"):
        return NEEDS_ATTENTION
    if row.phase == "Running":
        return WORKING
    for cond in row.conditions:
        kind = str(cond.get("type", ""))
        if (cond.get("status") == "True" and (kind in ATTENTION_CONDITIONS or kind.startswith(ATTENTION_PREFIXES))
                and _since_run_start(cond, row.started_at)):
            return NEEDS_ATTENTION
    return DONE if row.phase in ("Succeeded", "Delivered") else PENDING


def _since_run_start(cond: dict[str, Any], started_at: str | None) -> bool:
    """A condition of the current run (or of none yet): an earlier run's Stalled, left True in
    the record, says nothing about the run that has succeeded since."""
    if not started_at:
        return True
    try:
        return datetime.fromisoformat(str(cond.get("lastTransitionTime"))) >= datetime.fromisoformat(started_at)
    except (TypeError, ValueError):
        return True


def grouped(rows: list[AgentStatus]) -> list[tuple[str, list[AgentStatus]]]:
    """The non-empty groups in GROUPS order, each with its rows in their original order."""
    by_group: dict[str, list[AgentStatus]] = {g: [] for g in GROUPS}
    for row in rows:
        by_group[row.group or group_of(row)].append(row)
    return [(g, by_group[g]) for g in GROUPS if by_group[g]]


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"
