"""How a cost in USD reads: `usd`, for the status table and every spend line.

Kept apart from plan/budget.py (which imports pricing and the runtimes) so that `fleet
status`, reading the loop's snapshot, formats its COST column without loading those.
"""
from __future__ import annotations


def usd(value: float, digits: int | None = None) -> str:
    """A cost the way an operator reads it: $1.20, $0.35, $0.003, $0.00009 (a small cost is never $0.00)."""
    if digits is not None:
        return f"${value:,.{digits}f}"
    if value == 0:
        return "$0.00"
    if abs(value) >= 0.1:
        return f"${value:,.2f}"
    places = 2
    while abs(value) * 10 ** places < 10 and places < 9:  # two significant digits
        places += 1
    text = f"{value:.{places}f}".rstrip("0")
    return "$" + (text + "0" if text.endswith(".") else text)
