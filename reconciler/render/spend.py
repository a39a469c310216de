"""Spend the way an operator reads it: one line per budget (with its window and reset) and
per rollout projection, for `fleet status` and `fleet diff` (docs/output.md "Spend")."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..plan.budget import usd


def budget_line(line: Mapping[str, Any]) -> str:
    """`budget.windows[0] (per 5h): $1.20 spent of $1.00, $0 reserved, $0 left; resets 14:05 UTC`."""
    if line["unit"] == "tokens":
        amounts = f"{line['spent']:,.0f} tokens of {line['limit']:,.0f}"
        if line.get("reserved"):  # starts hold tokens on a window too (plan/budget.py)
            amounts += f", {line['reserved']:,.0f} reserved"
    else:
        amounts = f"{usd(line['spent'])} spent of {usd(line['limit'], 2)}, {usd(line['reserved'])} reserved"
        if line.get("left") is not None:
            amounts += f", {usd(max(0.0, line['left']))} left"
    text = f"{line['name']} ({line['period']}): {amounts}"
    if line.get("since") and line["period"] != "today":
        text += f"; window since {_hhmm(line['since'])}"
    if line.get("resetsAt"):
        text += f"; resets {_hhmm(line['resetsAt'])} UTC"
    return text


def projection_line(proj: Mapping[str, Any]) -> str:
    group = proj["group"]
    if proj.get("projectedUsd") is None and proj.get("failedPilots"):
        return (f"rollout {group}: pilot {', '.join(proj['failedPilots'])} failed for good; fix and restart it, "
                f"change the file, or `fleet promote FILE '{group}'`")
    if proj.get("projectedUsd") is None:
        return f"rollout {group}: pilot {', '.join(proj['pilots'])} not passed yet"
    text = (f"rollout {group}: projected {usd(proj['projectedUsd'])} for {proj['size']} agents "
            f"({usd(proj['restUsd'] or 0)} for the {proj['waiting']} not started)")
    if proj.get("budgetLeftUsd") is not None:
        text += f"; budget left {usd(max(0.0, proj['budgetLeftUsd']))}"
    if proj.get("promoted"):
        text += "; promoted"
    elif not proj.get("fits"):
        text += f"; held (`fleet promote FILE '{group}'` overrides)"
    return text


def _hhmm(iso: str) -> str:
    when = datetime.fromisoformat(iso)
    return when.strftime("%H:%M") if when.second == 0 else when.strftime("%H:%M:%S")
