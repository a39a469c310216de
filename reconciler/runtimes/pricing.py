"""List prices per model family, for runs whose CLI reported tokens but no cost.

A claude process killed mid-turn prints no result (its transcript still has each
message's usage), codex reports tokens only: fleet prices those tokens itself with
this table. It is small on purpose, dated, and overridable per model in fleet.yaml
(`budget.prices`, docs/fleet-yaml.md): the first entry whose `match` is a substring of
the model id wins, overrides first. USD per million tokens.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..spec.models import PriceOverride

PRICES_AS_OF = "2026-11-01"  # the providers' list prices on this date (docs/operations.md "Spend")


@dataclass(frozen=True)
class Price:
    match: str  # a substring of the model id, e.g. "sonnet", "opus-4-5", "gpt-5"
    input: float  # USD per million uncached input tokens
    output: float
    cache_read: float | None = None  # default: input / 10
    cache_write: float | None = None  # default: input * 1.25 (5-minute cache writes)


# Most specific first: "opus-4-5" must win over "opus".
PRICES: tuple[Price, ...] = (
    Price("opus-4-5", 5.0, 25.0),
    Price("opus-4-6", 5.0, 25.0),
    Price("opus", 15.0, 75.0),
    Price("sonnet", 3.0, 15.0),
    Price("haiku-4", 1.0, 5.0),
    Price("haiku-3-5", 0.8, 4.0),
    Price("haiku", 0.25, 1.25),
    Price("gpt-5-mini", 0.25, 2.0, cache_read=0.025),
    Price("gpt-5-nano", 0.05, 0.4, cache_read=0.005),
    Price("gpt-5", 1.25, 10.0, cache_read=0.125),
    Price("o4-mini", 1.1, 4.4, cache_read=0.275),
)


@dataclass(frozen=True)
class Tokens:
    input: int = 0  # uncached input
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(self.input + other.input, self.output + other.output,
                      self.cache_read + other.cache_read, self.cache_write + other.cache_write)

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write


def price_for(model: str | None, overrides: Sequence[Price] = ()) -> Price | None:
    if not model:
        return None
    for price in (*overrides, *PRICES):
        if price.match in model:
            return price
    return None


def cost(model: str | None, tokens: Tokens, overrides: Sequence[Price] = ()) -> float | None:
    """USD for `tokens` of `model`; None when the model has no known price."""
    price = price_for(model, overrides)
    if price is None:
        return None
    cache_read = price.cache_read if price.cache_read is not None else price.input / 10
    cache_write = price.cache_write if price.cache_write is not None else price.input * 1.25
    return (tokens.input * price.input + tokens.output * price.output + tokens.cache_read * cache_read
            + tokens.cache_write * cache_write) / 1_000_000


def priced(by_model: Mapping[str, Tokens], overrides: Sequence[Price] = ()) -> tuple[float | None, dict[str, float]]:
    """(total USD or None if any model is unpriced, USD per priced model)."""
    per: dict[str, float] = {}
    unknown = False
    for model, tokens in by_model.items():
        usd = cost(model, tokens, overrides)
        if usd is None:
            unknown = unknown or tokens.total > 0
            continue
        per[model] = usd
    return (None if unknown else sum(per.values())), per


def overrides(declared: Iterable[PriceOverride]) -> tuple[Price, ...]:
    """`budget.prices` from fleet.yaml, in the table's form."""
    return tuple(Price(p.match, p.input, p.output, p.cacheRead, p.cacheWrite) for p in declared)
