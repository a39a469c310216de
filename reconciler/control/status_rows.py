"""`fleet status` and `fleet describe`: the rows of plan/status.py, completed by the engine.

Computed without writing anything: the same observation and plan as `fleet diff`. Its
fields are `fleet status -o json`'s, documented in docs/output.md ("FleetStatus").
"""
from __future__ import annotations

from typing import Any

from ..engines import engine_for
from ..observe.model import Observed
from ..plan.actions import Plan
from ..plan.status import FleetStatus, status_rows
from ..spec.loader import LoadedFleet
from ..store import clock
from ..store.ledger import spend_on, today
from ..store.memo import Memo
from .converge import preview


def fleet_status(loaded: LoadedFleet) -> FleetStatus:
    return fleet_view(loaded)[0]


FleetView = tuple[FleetStatus, Observed, Plan]  # a status with the observation and plan it was made from


def fleet_view(loaded: LoadedFleet, *, memo: Memo[Any] | None = None) -> FleetView:
    """The status, with the observation and plan it was made from (the dashboard shows the plan).
    `memo`: the running loop's (store/memo.py), for the status it publishes after a tick."""
    engine = engine_for(loaded, memo=memo)
    observed, plan = preview(loaded, engine=engine)
    spend = spend_on(today(), [a.record for a in observed.agents.values() if a.record])
    rows = engine.status_rows(observed, status_rows(loaded, observed, plan, clock.now()))
    status = FleetStatus(loaded.name, rows, round(spend.total, 6), loaded.fleet.spec.budget.usdPerDay, spend.by_tier,
                         budgets=list(plan.budgets), projections=list(plan.projections))
    return status, observed, plan
