"""`fleet status FILE`: one row per agent."""
from __future__ import annotations

import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from ..control.status_rows import fleet_status
from ..errors import EXIT_OK
from ..plan.status import AgentStatus, human_age
from ..spec.loader import load_fleet

_PHASE_STYLE = {"Running": "cyan", "Succeeded": "green", "Delivered": "bold green", "Failed": "red",
                "Blocked": "bold red", "Pending": "yellow"}


def run(*, file: str, output: str, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    status = fleet_status(loaded)
    if output == "json":
        data = {"apiVersion": "fleet/v1alpha1", "kind": "FleetStatus", "fleet": loaded.name,
                "spendTodayUsd": status.spend_today_usd, "budgetUsdPerDay": status.budget_usd_per_day,
                "spendTodayByTier": status.spend_today_by_tier, "agents": [asdict(r) for r in status.agents]}
        console.print(json.dumps(data, indent=2, sort_keys=True), markup=False, highlight=False, soft_wrap=True)
        return EXIT_OK
    console.print(_table(loaded.name, status.agents))
    total = sum(r.cost_usd for r in status.agents)
    budget = status.budget_usd_per_day
    today = f"spend today: ${status.spend_today_usd:.2f}" + (f" of ${budget:.2f} budget" if budget else "")
    console.print(f"{today}; all-time cost of these agents: ${total:.2f}")
    return EXIT_OK


def _table(fleet: str, rows: list[AgentStatus]) -> Table:
    table = Table(title=f"fleet {fleet}", title_justify="left", header_style="bold")
    nodes = any(r.node for r in rows)  # placement.engine ray: where each session runs
    queue = any(r.delivery or r.behind_base for r in rows)  # spec.delivery: the merge queue's word
    for col in ("AGENT", "PHASE", "SYNC", "TIER/MODEL", "BRANCH", "DIRTY", "AHEAD", "PID", *(["NODE"] if nodes else []),
                "AGE", "IDLE", "COST", *(["DELIVERY"] if queue else []), "REASON"):
        table.add_column(col, no_wrap=col not in ("REASON", "BRANCH"),
                         justify="right" if col in ("DIRTY", "AHEAD", "PID", "COST") else "left")
    for r in rows:
        style = _PHASE_STYLE.get(r.phase, "")
        name = r.agent if r.declared else f"{r.agent} (undeclared)"
        tier = f"{r.tier or '-'}/{r.model}" if r.model else (r.tier or "-")
        table.add_row(name, f"[{style}]{r.phase}[/]" if style else r.phase, r.sync, tier, r.branch or "-",
                      _n(r.dirty), _n(r.ahead), _n(r.pid), *([r.node or "-"] if nodes else []),
                      human_age(r.age_seconds), human_age(r.idle_seconds),
                      f"${r.cost_usd:.2f}", *([_delivery(r)] if queue else []),
                      r.reason or "")
    return table


def _delivery(r: AgentStatus) -> str:
    behind = f"BehindBase: {r.behind_base} commits" if r.behind_base else ""
    return "; ".join(p for p in (r.delivery, behind) if p) or "-"


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
