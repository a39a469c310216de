"""`fleet status FILE`: one row per agent.

With a loop running for FILE, the rows are the loop's last observation (checked for
liveness, control/observed_status.py) and no fleet file is loaded; else, or with
`--refresh`, fleet observes now.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from ..control.observed_status import Read, aged_rows, read_view
from ..errors import EXIT_OK
from ..plan.status import AgentStatus, FleetStatus, human_age

_PHASE_STYLE = {"Running": "cyan", "Succeeded": "green", "Failed": "red", "Blocked": "bold red",
                "Pending": "yellow"}


def run(*, file: str, output: str, console: Console, err: Console, refresh: bool = False) -> int:
    cached = None if refresh else read_view(file)
    view = cached.view if cached is not None else None
    if cached is not None and view is not None:
        status, observed_by = _from_view(view), _observed_line(cached)
    else:
        from ..control.status_rows import fleet_status
        from ..spec.loader import load_fleet

        loaded = load_fleet(file)
        status, observed_by = fleet_status(loaded), None
    if output == "json":
        data = {"apiVersion": "fleet/v1alpha1", "kind": "FleetStatus", "fleet": status.fleet,
                "spendTodayUsd": status.spend_today_usd, "budgetUsdPerDay": status.budget_usd_per_day,
                "spendTodayByTier": status.spend_today_by_tier,
                "agents": aged_rows(view) if view is not None else [asdict(r) for r in status.agents]}
        if view is not None:
            data |= {"observedAt": view["observedAt"], "observedBy": view["observedBy"]}
        # written as it is: rich's text handling costs more than the rest at 1,000 agents
        console.file.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return EXIT_OK
    console.print(_table(status.fleet, status.agents))
    if observed_by:
        console.print(observed_by, markup=False)
    total = sum(r.cost_usd for r in status.agents)
    budget = status.budget_usd_per_day
    today = f"spend today: ${status.spend_today_usd:.2f}" + (f" of ${budget:.2f} budget" if budget else "")
    console.print(f"{today}; all-time cost of these agents: ${total:.2f}")
    return EXIT_OK


def _from_view(view: dict[str, Any]) -> FleetStatus:
    return FleetStatus(view["fleet"], [AgentStatus(**a) for a in aged_rows(view)], view["spendTodayUsd"],
                       view["budgetUsdPerDay"], view["spendTodayByTier"])


def _observed_line(read: Read) -> str:
    age = read.age_seconds or 0.0
    pid = (read.loop or {}).get("pid")
    return f"observed {human_age(age)} ago by the loop (pid {pid}); `fleet status --refresh` observes now"


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
                      f"${r.cost_usd:.2f}",
                      r.reason or "")
    return table


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
