"""`fleet status FILE`: one row per agent."""
from __future__ import annotations

import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from ..control.status_rows import fleet_status
from ..errors import EXIT_OK
from ..plan.budget import usd
from ..plan.status import AgentStatus, human_age
from ..render.spend import budget_line, projection_line
from ..spec.loader import load_fleet

_PHASE_STYLE = {"Running": "cyan", "Succeeded": "green", "Failed": "red", "Blocked": "bold red",
                "Pending": "yellow"}


def run(*, file: str, output: str, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    status = fleet_status(loaded)
    if output == "json":
        data = {"apiVersion": "fleet/v1alpha1", "kind": "FleetStatus", "fleet": loaded.name,
                "spendTodayUsd": status.spend_today_usd, "budgetUsdPerDay": status.budget_usd_per_day,
                "spendTodayByTier": status.spend_today_by_tier, "budgets": status.budgets,
                "projections": status.projections, "agents": [asdict(r) for r in status.agents]}
        console.print(json.dumps(data, indent=2, sort_keys=True), markup=False, highlight=False, soft_wrap=True)
        return EXIT_OK
    console.print(_table(loaded.name, status.agents))
    total = sum(r.cost_usd for r in status.agents)
    budget = status.budget_usd_per_day
    today = f"spend today: {usd(status.spend_today_usd)}" + (f" of {usd(budget, 2)} budget" if budget else "")
    console.print(f"{today}; all-time cost of these agents: {usd(total)}")
    for line in status.budgets:
        console.print(budget_line(line), markup=False)
    for proj in status.projections:
        console.print(projection_line(proj), markup=False)
    return EXIT_OK


def _table(fleet: str, rows: list[AgentStatus]) -> Table:
    table = Table(title=f"fleet {fleet}", title_justify="left", header_style="bold")
    nodes = any(r.node for r in rows)  # placement.engine ray: where each session runs
    for col in ("AGENT", "PHASE", "SYNC", "TIER/MODEL", "BRANCH", "DIRTY", "AHEAD", "PID", *(["NODE"] if nodes else []),
                "AGE", "IDLE", "COST", "REASON"):
        table.add_column(col, no_wrap=col not in ("REASON", "BRANCH"),
                         justify="right" if col in ("DIRTY", "AHEAD", "PID", "COST") else "left")
    for r in rows:
        style = _PHASE_STYLE.get(r.phase, "")
        name = r.agent if r.declared else f"{r.agent} (undeclared)"
        tier = f"{r.tier or '-'}/{r.model}" if r.model else (r.tier or "-")
        table.add_row(name, f"[{style}]{r.phase}[/]" if style else r.phase, r.sync, tier, r.branch or "-",
                      _n(r.dirty), _n(r.ahead), _n(r.pid), *([r.node or "-"] if nodes else []),
                      human_age(r.age_seconds), human_age(r.idle_seconds),
                      usd(r.cost_usd) + (f" (+{usd(r.live_usd)} live)" if r.live_usd else ""),
                      r.reason or "")
    return table


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
