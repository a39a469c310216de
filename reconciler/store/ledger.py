"""Spend per UTC day, from the cost ledger each session record carries."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import clock
from .records import SessionRecord


@dataclass
class Spend:
    total: float = 0.0
    by_tier: dict[str, float] = field(default_factory=dict)


def today() -> str:
    return clock.now().date().isoformat()


def spend_on(day: str, records: Iterable[SessionRecord]) -> Spend:
    """USD recorded for runs that finished on `day` (YYYY-MM-DD, UTC)."""
    spend = Spend()
    for rec in records:
        for entry in rec.ledger.values():
            at = str(entry.get("at") or "")
            if not at.startswith(day):
                continue
            usd = float(entry.get("usd") or 0)
            spend.total += usd
            if rec.tier:
                spend.by_tier[rec.tier] = spend.by_tier.get(rec.tier, 0.0) + usd
    return spend
