"""The four groups of the fleet page, as the agent views people like have them.

Needs attention: Failed, Blocked, or a wait a person must lift (stalled, budget, start
failure, unreadable exit, a deadline). Working: a session runs. Done: Succeeded. Pending:
the rest (not started yet, waiting for a slot or its gates).
"""
from __future__ import annotations

from typing import Any

ATTENTION, WORKING, PENDING, DONE = "Needs attention", "Working", "Pending", "Done"
GROUPS = (ATTENTION, WORKING, PENDING, DONE)
# conditions that, when True, mean a person should look
ATTENTION_CONDITIONS = frozenset({"Stalled", "BudgetExhausted", "DeadlineExceeded", "StartFailed",
                                  "ExitRecordCorrupt", "Blocked"})


def group_of(row: dict[str, Any]) -> str:
    phase = row.get("phase")
    if phase in ("Failed", "Blocked"):
        return ATTENTION
    if any(c.get("status") == "True" and c.get("type") in ATTENTION_CONDITIONS for c in row.get("conditions") or ()):
        return ATTENTION
    if phase == "Running":
        return WORKING
    if phase == "Succeeded":
        return DONE
    return PENDING


def grouped(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {g: [] for g in GROUPS}
    for row in rows:
        out[group_of(row)].append(row)
    return out
