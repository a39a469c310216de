"""The per-agent status rows: a pure function of desired state, observed state and the pending plan.

What only an engine can tell (dirty files, commits ahead, the node) is filled in by
`Engine.status_rows`; control/status_rows.py puts the two together (docs/output.md "fleet status").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ..observe.model import Observed, ObservedAgent
from ..spec.loader import LoadedFleet
from ..store.records import Condition, SessionRecord
from .actions import MERGE, PUSH, Action, Plan
from .delivery import delivery_status


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
    delivery: str | None = None  # spec.delivery: Queued 1 of 3, Delivered into X, Conflicted: FILES...
    behind_base: int | None = None  # commits on base its branch lacks (BehindBase), with spec.delivery
    group: str = ""  # GROUPS: where `fleet status` lists it (set by `status_rows`, from the fields above)


def status_rows(loaded: LoadedFleet, observed: Observed, plan: Plan, now: datetime) -> list[AgentStatus]:
    """One row per declared agent (file order), then per undeclared one the fleet still has."""
    pending = {a.agent: a for a in plan.actions if a.kind not in (MERGE, PUSH)}
    queued = {a.agent: f"Queued {a.details['position']} of {a.details['of']}" for a in plan.actions if a.kind == MERGE}
    rows: list[AgentStatus] = []
    names = [a.name for a in loaded.agents] + sorted(set(observed.agents) - {a.name for a in loaded.agents})
    for name in names:
        desired = loaded.agent(name)
        obs = observed.agents.get(name) or ObservedAgent(name)
        rec = obs.record
        wt = obs.worktree
        phase = obs.phase or "Pending"
        action = pending.get(name)
        reason = rec.reason if rec else None
        if action is not None and action.kind == "blocked":
            phase, reason = "Blocked", action.reason
        elif action is not None and action.kind == "wait":
            finished = phase in ("Failed", "Succeeded")
            phase = phase if finished else "Pending"
            # a failed run waiting for its backoff: say both why it failed and when it restarts
            reason = f"{reason}; {action.reason}" if finished and reason else action.reason
        elif phase == "Pending" and action is not None:
            reason = f"next apply: {action.kind} ({action.reason})"
        branch = wt.branch if wt else (desired.branch if desired else rec.branch if rec else None)
        rows.append(AgentStatus(
            agent=name, declared=desired is not None, phase=phase,
            sync=_sync(desired.spec_hash if desired else None, rec.spec_hash if rec else None),
            tier=desired.tier_name if desired else rec.tier if rec else None,
            runtime=desired.tier.runtime if desired else rec.runtime if rec else None,
            model=desired.tier.model if desired else rec.model if rec else None,
            branch=branch, worktree=str(wt.path) if wt else None,
            dirty=None, ahead=None,  # the engine's to tell (Engine.status_rows)
            pid=rec.pid if rec and obs.alive else None,
            started_at=rec.started_at if rec else None, finished_at=rec.finished_at if rec else None,
            age_seconds=_age(rec.started_at if rec else None, now),
            idle_seconds=(round(now.timestamp() - obs.last_progress, 1)
                          if obs.alive and obs.last_progress else None),
            exit_code=obs.exit_code, attempts=rec.attempts if rec else 0,
            cost_usd=rec.cost_usd if rec else 0.0, session_id=rec.session_id if rec else None,
            spec_hash=desired.spec_hash if desired else None,
            observed_generation=rec.spec_hash if rec else None, reason=reason,
            conditions=_conditions(rec, action), last_output=list(rec.last_output) if rec else [],
            last_gate=rec.last_gate if rec else None))
        rows[-1].delivery, rows[-1].behind_base = delivery_status(desired, rec, observed.delivery, queued)
    for row in rows:
        row.group = group_of(row)
    return rows


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


def _conditions(rec: SessionRecord | None, action: Action | None) -> list[dict[str, Any]]:
    """The record's conditions, plus the one the next action implies (a wait on budget or
    backoff), so status tells the truth before an apply has recorded it."""
    found = {c.type: asdict(c) for c in rec.conditions} if rec else {}
    implied = action.details.get("condition") if action is not None else None
    if implied and found.get(implied, {}).get("status") != "True":
        found[implied] = asdict(Condition(implied, "True", implied, action.reason))  # type: ignore[union-attr]
    return list(found.values())


def _sync(desired: str | None, observed: str | None) -> str:
    if desired is None:
        return "OutOfSync"  # declared nowhere: will be pruned
    if observed is None:
        return "OutOfSync"
    return "Synced" if desired == observed else "OutOfSync"


def _age(since: str | None, now: datetime) -> float | None:
    if not since:
        return None
    return (now - datetime.fromisoformat(since)).total_seconds()


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
