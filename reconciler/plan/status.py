"""The per-agent status rows: a pure function of desired state, observed state and the pending plan.

What only an engine can tell (dirty files, commits ahead, the node) is filled in by
`Engine.status_rows`; control/status_rows.py puts the two together (docs/output.md "fleet status").
The row itself, its group and `human_age` live in plan/status_row.py (light: the loop's
snapshot is shown without this module's imports) and are re-exported here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..observe.model import Observed, ObservedAgent
from ..store.records import CREATING_WORKTREE, FAILED, PRUNING, STARTING_SESSION, Condition, SessionRecord
from .actions import MERGE, PUSH, Action, Plan
from .delivery import delivery_status
from .status_row import (
    ATTENTION_CONDITIONS,
    ATTENTION_PREFIXES,
    DONE,
    GROUPS,
    NEEDS_ATTENTION,
    PENDING,
    WORKING,
    AgentStatus,
    group_of,
    grouped,
    human_age,
)

__all__ = ["ATTENTION_CONDITIONS", "ATTENTION_PREFIXES", "DONE", "GROUPS", "NEEDS_ATTENTION", "PENDING", "WORKING",
           "AgentStatus", "FleetStatus", "group_of", "grouped", "human_age", "status_rows"]

if TYPE_CHECKING:  # `fleet status` reading the loop's snapshot builds rows without loading a fleet file
    from ..spec.loader import LoadedFleet


@dataclass
class FleetStatus:
    """`fleet status`: the rows and the day's spend (control/status_rows.py computes it)."""

    fleet: str
    agents: list[AgentStatus]
    spend_today_usd: float
    budget_usd_per_day: float | None
    spend_today_by_tier: dict[str, float]
    budgets: list[dict[str, Any]] = field(default_factory=list)  # each budget line (plan/budget.py Line.to_json)
    projections: list[dict[str, Any]] = field(default_factory=list)  # each rollout group's pilot projection


def _reason(rec: SessionRecord | None) -> str | None:
    """The record's reason as a person reads it. A step that failed keeps its intent there
    ("creating worktree": what tells the next pass the half-made tree is fleet's), so a failed
    one shows the failure its Ready condition holds, with the step it was."""
    if rec is None:
        return None
    if rec.phase == FAILED and rec.reason in (CREATING_WORKTREE, STARTING_SESSION, PRUNING):
        ready = next((c for c in rec.conditions if c.type == "Ready" and c.status == "False" and c.message), None)
        if ready is not None:
            return f"{ready.message} (while {rec.reason})"
    return rec.reason


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
        reason = _reason(rec)
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
            last_gate=rec.last_gate if rec else None,
            reserved_usd=rec.reserved_usd if rec and obs.alive else None,
            live_usd=obs.live_usd if obs.alive else None,
            cost_unknown=bool(rec and any(e.get("unknown") for e in rec.ledger.values()))))
        rows[-1].delivery, rows[-1].behind_base = delivery_status(desired, rec, observed.delivery, queued)
    for row in rows:
        row.group = group_of(row)
    return rows


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
