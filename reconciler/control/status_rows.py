"""`fleet status` and `fleet describe`: the rows of plan/status.py, completed by the engine.

Computed without writing anything: the same observation and plan as `fleet diff`. Its
fields are `fleet status -o json`'s, documented in docs/output.md ("FleetStatus").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..engines import engine_for
from ..plan.status import AgentStatus, status_rows
from ..spec.loader import LoadedFleet
from ..store import clock
from ..store.ledger import spend_on, today
from .converge import preview


@dataclass
class FleetStatus:
    fleet: str
    agents: list[AgentStatus]
    spend_today_usd: float
    budget_usd_per_day: float | None
    spend_today_by_tier: dict[str, float]
    budgets: list[dict[str, Any]] = field(default_factory=list)  # each budget line (plan/budget.py Line.to_json)
    projections: list[dict[str, Any]] = field(default_factory=list)  # each rollout group's pilot projection


def fleet_status(loaded: LoadedFleet) -> FleetStatus:
    engine = engine_for(loaded)
    observed, plan = preview(loaded, engine=engine)
    spend = spend_on(today(), [a.record for a in observed.agents.values() if a.record])
    rows = engine.status_rows(observed, status_rows(loaded, observed, plan, clock.now()))
    return FleetStatus(loaded.name, rows, round(spend.total, 6), loaded.fleet.spec.budget.usdPerDay, spend.by_tier,
                       budgets=list(plan.budgets), projections=list(plan.projections))
