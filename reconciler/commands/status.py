"""`fleet status FILE`: one row per agent."""
from __future__ import annotations

import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from ..errors import EXIT_OK
from ..spec.loader import load_fleet
from ..status import AgentStatus, fleet_status, human_age

_PHASE_STYLE = {"Running": "cyan", "Succeeded": "green", "Failed": "red", "Blocked": "bold red",
                "Pending": "yellow"}


def run(*, file: str, output: str, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    rows = fleet_status(loaded)
    if output == "json":
        data = {"apiVersion": "fleet/v1alpha1", "kind": "FleetStatus", "fleet": loaded.name,
                "agents": [asdict(r) for r in rows]}
        console.print(json.dumps(data, indent=2, sort_keys=True), markup=False, highlight=False, soft_wrap=True)
        return EXIT_OK
    console.print(_table(loaded.name, rows))
    total = sum(r.cost_usd for r in rows)
    budget = loaded.fleet.spec.budget.usdPerDay
    console.print(f"cost: ${total:.2f}" + (f" (budget ${budget:.2f}/day)" if budget else ""))
    return EXIT_OK


def _table(fleet: str, rows: list[AgentStatus]) -> Table:
    table = Table(title=f"fleet {fleet}", title_justify="left", header_style="bold")
    for col in ("AGENT", "PHASE", "SYNC", "TIER/MODEL", "BRANCH", "DIRTY", "AHEAD", "PID", "AGE", "COST",
                "REASON"):
        table.add_column(col, no_wrap=col not in ("REASON", "BRANCH"),
                         justify="right" if col in ("DIRTY", "AHEAD", "PID", "COST") else "left")
    for r in rows:
        style = _PHASE_STYLE.get(r.phase, "")
        name = r.agent if r.declared else f"{r.agent} (undeclared)"
        tier = f"{r.tier or '-'}/{r.model}" if r.model else (r.tier or "-")
        table.add_row(name, f"[{style}]{r.phase}[/]" if style else r.phase, r.sync, tier, r.branch or "-",
                      _n(r.dirty), _n(r.ahead), _n(r.pid), human_age(r.age_seconds), f"${r.cost_usd:.2f}",
                      r.reason or "")
    return table


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
