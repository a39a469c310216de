"""Budgets as caps: what each budget has left, what a start reserves, when a window resets.

Pure (the planner's): reads the spec, the records' ledgers and the running sessions'
live spend and reservations, all observed data, and a `now`. A budget line is one
limit a run may fall under: the fleet's day (`budget.usdPerDay`), a tier's day
(`budget.perTier`), an agent's day (`budget.usdPerAgentPerDay`), a quota window of the
fleet (`budget.windows`) or of a tier (`tiers.T.windows`).

Admission: a start is admitted while every line it falls under has something left
after what is spent and what running sessions reserved; it then reserves its amount
on each (so the next start in the same plan sees it). A run may therefore overshoot
a budget by at most its own reservation, which is also its hard cap. On a token
window the amount is in tokens (`reservation_tokens`): the median tokens of the tier's
finished runs, else the USD reservation at the tier model's input price.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..runtimes.pricing import overrides, price_for
from ..spec.durations import parse_duration
from ..store.records import SessionRecord
from .money import usd  # re-exported: one formatter for every cost shown

if TYPE_CHECKING:  # `usd` is imported by status from the loop's snapshot, which loads no pydantic
    from ..spec.desired import DesiredAgent
    from ..spec.models import FleetSpec, Window

USD, TOKENS = "usd", "tokens"


@dataclass(frozen=True)
class Spent:
    """One run's spend at a time: a ledger entry, or a running session's live spend."""

    agent: str
    tier: str | None
    at: datetime
    usd: float
    tokens: int


@dataclass
class Line:
    name: str  # as in fleet.yaml: budget.usdPerDay, budget.perTier.worker, budget.windows[0], ...
    limit: float
    unit: str  # USD | TOKENS
    period: str  # "today", or "per 5h"
    tier: str | None = None  # only runs of this tier count and are limited
    agent_scoped: bool = False  # per agent: `spent_by` holds each agent's own spend
    spent: float = 0.0
    reserved: float = 0.0
    since: datetime | None = None  # a window's start
    resets_at: datetime | None = None
    spent_by: dict[str, float] = field(default_factory=dict)
    reserved_by: dict[str, float] = field(default_factory=dict)

    def applies(self, tier: str | None) -> bool:
        return self.tier is None or self.tier == tier

    def spent_for(self, agent: str) -> float:
        return self.spent_by.get(agent, 0.0) if self.agent_scoped else self.spent

    def reserved_for(self, agent: str) -> float:
        return self.reserved_by.get(agent, 0.0) if self.agent_scoped else self.reserved

    def left(self, agent: str) -> float:
        return self.limit - self.spent_for(agent) - self.reserved_for(agent)

    def reached(self, agent: str) -> bool:
        """Spent (not merely reserved) up to its limit: running sessions under it are over budget."""
        return self.spent_for(agent) >= self.limit

    def reserve(self, agent: str, amount: float) -> None:
        """Hold `amount` (this line's unit) for a run of `agent` starting or running."""
        self.reserved += amount
        self.reserved_by[agent] = self.reserved_by.get(agent, 0.0) + amount

    def refusal(self, agent: str) -> str:
        spent, reserved = self.spent_for(agent), self.reserved_for(agent)
        where = "today" if self.period == "today" else (
            f"in the window since {_hhmm(self.since)}" if self.since else "in the window")
        if self.unit == TOKENS:
            held = f", {reserved:,.0f} reserved by sessions running or starting" if reserved > 0 else ""
            text = f"{self.name} {self.limit:,.0f} tokens {self._per()}reached ({spent:,.0f} tokens {where}{held})"
        else:
            held = f", {usd(reserved)} reserved by sessions running or starting" if reserved > 0 else ""
            text = f"{self.name} {usd(self.limit, 2)} {self._per()}reached ({usd(spent, 2)} spent {where}{held})"
        if self.resets_at is not None and self.reached(agent):
            text += f"; resumes at {_hhmm(self.resets_at, up=True)} UTC"
        return text

    def _per(self) -> str:
        return "" if self.period == "today" else f"{self.period} "

    def to_json(self, agent: str | None = None) -> dict[str, object]:
        return {"name": self.name, "unit": self.unit, "limit": self.limit, "period": self.period,
                "spent": round(self.spent if agent is None else self.spent_for(agent), 6),
                "reserved": round(self.reserved if agent is None else self.reserved_for(agent), 6),
                "left": round(self.limit - self.spent - self.reserved, 6)
                if not self.agent_scoped else None,
                "since": _iso(self.since), "resetsAt": _iso(self.resets_at)}


@dataclass
class Budgets:
    lines: list[Line]
    reservations: dict[str, float]  # running agent -> what it still holds reserved (beyond its live spend)
    token_reservations: dict[str, float] = field(default_factory=dict)  # the same, in tokens

    def counts_tokens(self) -> bool:
        return any(line.unit == TOKENS for line in self.lines)

    def under(self, tier: str | None) -> list[Line]:
        return [line for line in self.lines if line.applies(tier)]

    def refusing(self, agent: str, tier: str | None) -> Line | None:
        """The first line a start of `agent` falls under that has nothing left, if any."""
        return next((line for line in self.under(tier) if line.left(agent) <= 0), None)

    def reserve(self, agent: str, tier: str | None, amount: float, tokens: float = 0.0) -> None:
        """A start reserves `amount` (USD) on every USD line it falls under, `tokens` on every token line."""
        for line in self.under(tier):
            line.reserve(agent, amount if line.unit == USD else tokens)

    def reached(self, agent: str, tier: str | None) -> Line | None:
        return next((line for line in self.under(tier) if line.reached(agent)), None)

    def left(self, tier: str | None) -> float | None:
        """USD left under the fleet-wide and the tier's lines (agent lines aside); None: no limit."""
        lefts = [line.limit - line.spent - line.reserved for line in self.under(tier)
                 if line.unit == USD and not line.agent_scoped]
        return min(lefts) if lefts else None


def budgets(spec: FleetSpec, records: Iterable[SessionRecord], live: dict[str, tuple[float, int]],
            now: datetime) -> Budgets:
    """Every budget line with what is spent and reserved in it at `now`.

    `live`: running agent -> (USD, tokens) its current run has spent so far.
    """
    recs = list(records)
    spent = _spent(recs, live, now)
    reservations = {r.agent: max(0.0, (r.reserved_usd or 0.0) - live.get(r.agent, (0.0, 0))[0])
                    for r in recs if r.agent in live and r.reserved_usd}
    runs = TierRuns(recs)
    held_tokens = {r.agent: max(0.0, held - live.get(r.agent, (0.0, 0))[1]) for r in recs if r.agent in live
                   if (held := _tokens_for(spec, runs, r.tier, r.model, r.reserved_usd)) is not None}
    tiers = {r.agent: r.tier for r in recs}
    b = spec.budget
    lines: list[Line] = []
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = day_start + timedelta(days=1)
    if b.usdPerDay is not None:
        lines.append(Line("budget.usdPerDay", b.usdPerDay, USD, "today"))
    for tier, limit in b.perTier.items():
        lines.append(Line(f"budget.perTier.{tier}", limit, USD, "today", tier=tier))
    if b.usdPerAgentPerDay is not None:
        lines.append(Line("budget.usdPerAgentPerDay", b.usdPerAgentPerDay, USD, "today", agent_scoped=True))
    for line in lines:
        for s in spent:
            if s.at >= day_start and line.applies(s.tier):
                line.spent += s.usd
                line.spent_by[s.agent] = line.spent_by.get(s.agent, 0.0) + s.usd
        for agent, usd_held in reservations.items():
            if line.applies(tiers.get(agent)):
                line.reserve(agent, usd_held)
        line.resets_at = tomorrow
    windows: list[tuple[str, Window, str | None]] = [(f"budget.windows[{i}]", w, None) for i, w in enumerate(b.windows)]
    for tier_name, tier_spec in spec.tiers.items():
        windows += [(f"tiers.{tier_name}.windows[{i}]", w, tier_name) for i, w in enumerate(tier_spec.windows)]
    for name, window, scope in windows:
        line = _window(name, window, scope, [s for s in spent if scope is None or s.tier == scope], now)
        for agent, held in (reservations if line.unit == USD else held_tokens).items():
            if line.applies(tiers.get(agent)):
                line.reserve(agent, held)
        lines.append(line)
    return Budgets(lines, reservations, held_tokens)


def _spent(records: list[SessionRecord], live: dict[str, tuple[float, int]], now: datetime) -> list[Spent]:
    out: list[Spent] = []
    for rec in records:
        for entry in rec.ledger.values():
            at = _parse(entry.get("at"))
            if at is None:
                continue
            out.append(Spent(rec.agent, rec.tier, at, float(entry.get("usd") or 0), int(entry.get("tokens") or 0)))
        if rec.agent in live:
            usd_now, tokens = live[rec.agent]
            out.append(Spent(rec.agent, rec.tier, now, usd_now, tokens))
    return sorted(out, key=lambda s: s.at)


def _window(name: str, window: Window, tier: str | None, spent: list[Spent], now: datetime) -> Line:
    """A window opens with the first run that ends after the previous one closed."""
    every = timedelta(seconds=parse_duration(window.every))
    unit, limit = (USD, float(window.usd)) if window.usd is not None else (TOKENS, float(window.tokens or 0))
    line = Line(name, limit, unit, f"per {window.every}", tier=tier)
    start: datetime | None = None
    for s in spent:
        if s.at > now:
            continue
        if start is None or s.at >= start + every:
            start = s.at
    if start is None or now >= start + every:
        return line  # no window open: the next run opens one
    line.since, line.resets_at = start, start + every
    line.spent = sum((s.usd if unit == USD else s.tokens) for s in spent if start <= s.at <= now)
    return line


class TierRuns:
    """The finished runs of every tier, grouped once: a plan asks for a reservation per agent
    (and per running record), and scanning every record for each was O(agents x records)."""

    def __init__(self, records: Iterable[SessionRecord]) -> None:
        usd: dict[str | None, list[float]] = {}
        tokens: dict[str | None, list[int]] = {}
        for r in records:
            for e in r.ledger.values():
                if e.get("unknown"):
                    continue
                usd.setdefault(r.tier, []).append(float(e.get("usd") or 0))
                if e.get("tokens"):
                    tokens.setdefault(r.tier, []).append(int(e.get("tokens") or 0))
        self._usd = {tier: statistics.median(runs) for tier, runs in usd.items()}
        self._tokens = {tier: float(statistics.median(runs)) for tier, runs in tokens.items()}

    def median_usd(self, tier: str | None) -> float | None:
        return self._usd.get(tier)

    def median_tokens(self, tier: str | None) -> float | None:
        return self._tokens.get(tier)


def reservation(agent: DesiredAgent, runs: TierRuns, spec: FleetSpec) -> float | None:
    """What a start of `agent` reserves: its tier's maxUsdPerRun, else the median of the tier's
    finished runs, else budget.estimateUsdPerRun; None if none is known."""
    if agent.tier.maxUsdPerRun is not None:
        return agent.tier.maxUsdPerRun
    median = runs.median_usd(agent.tier_name)
    return median if median is not None else spec.budget.estimateUsdPerRun


def reservation_tokens(agent: DesiredAgent, runs: TierRuns, spec: FleetSpec) -> float | None:
    """What a start of `agent` reserves on a token window (see `_tokens_for`)."""
    return _tokens_for(spec, runs, agent.tier_name, agent.tier.model, reservation(agent, runs, spec))


def _tokens_for(spec: FleetSpec, runs: TierRuns, tier: str | None, model: str | None,
                usd_amount: float | None) -> float | None:
    """A run's token reservation: the median tokens of its tier's finished runs, unless the tier
    declares a maxUsdPerRun (a cap, not a typical run); else its USD reservation at the model's
    input price (the tokens that money buys uncached); None if neither is known."""
    declared = spec.tiers.get(tier) if tier else None
    if declared is None or declared.maxUsdPerRun is None:
        median = runs.median_tokens(tier)
        if median is not None:
            return median
    price = price_for(model, overrides(spec.budget.prices))
    if usd_amount and price is not None and price.input > 0:
        return usd_amount / price.input * 1_000_000
    return None


def _hhmm(when: datetime | None, *, up: bool = False) -> str:
    """HH:MM (UTC); `up`: rounded up to the minute (a reset is never shown earlier than it is)."""
    if when is None:
        return "?"
    if up and (when.second or when.microsecond):
        when = when.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return when.strftime("%H:%M")


def _iso(when: datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when else None


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
