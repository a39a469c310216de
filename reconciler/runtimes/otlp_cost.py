"""claude's own cost as it exports it: `claude_code.cost.usage` out of OTLP metric exports.

A running claude prices each model response the moment it ends and exports the cost
(and `claude_code.token.usage`) over OTLP, attributed by `session.id`. Its stream-json
log cannot give that figure: an `assistant` event carries the output count of the
message's start (1), and the final usage is only in the result at the very end. So
fleet's receiver (act/spend_receiver.py) takes these exports and folds them with
`SessionSpend`; observe/live.py reads what it wrote.

Pure: an export is the JSON form of an `ExportMetricsServiceRequest` (OTLP/HTTP with
`http/json`, what fleet asks claude for; a protobuf body is decoded to the same form
by the receiver). Both temporalities are handled: claude 2.1.197 and 2.1.332 export
deltas (checked); a cumulative stream keeps its latest value.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

COST, TOKENS = "claude_code.cost.usage", "claude_code.token.usage"
SESSION = "session.id"
_CUMULATIVE = (2, "AGGREGATION_TEMPORALITY_CUMULATIVE")  # the enum as a number (JSON) or its name (protobuf)


@dataclass(frozen=True)
class Point:
    metric: str  # COST or TOKENS
    session: str
    value: float
    cumulative: bool
    stream: tuple[Any, ...]  # identifies a cumulative stream: its attributes and start time


def points(export: Mapping[str, Any]) -> Iterator[Point]:
    """The cost and token points of one export, each with the session it is for."""
    for rm in _list(export.get("resourceMetrics")):
        for sm in _list(rm.get("scopeMetrics")):
            for metric in _list(sm.get("metrics")):
                name = metric.get("name")
                data = metric.get("sum")
                if name not in (COST, TOKENS) or not isinstance(data, dict):
                    continue
                cumulative = data.get("aggregationTemporality") in _CUMULATIVE
                for p in _list(data.get("dataPoints")):
                    attrs = _attributes(p.get("attributes"))
                    session = attrs.get(SESSION)
                    value = _number(p.get("asDouble", p.get("asInt")))
                    if not isinstance(session, str) or value is None:
                        continue
                    stream = (name, tuple(sorted(attrs.items())), str(p.get("startTimeUnixNano", "")))
                    yield Point(name, session, value, cumulative, stream)


@dataclass
class SessionSpend:
    """What the exports received so far say each session spent (USD, tokens)."""

    deltas: dict[tuple[str, str], float] = field(default_factory=dict)  # (metric, session) -> sum of deltas
    latest: dict[tuple[Any, ...], tuple[str, str, float]] = field(default_factory=dict)  # stream -> last value
    exports: int = 0

    def add(self, export: Mapping[str, Any]) -> None:
        self.exports += 1
        for p in points(export):
            if p.cumulative:
                self.latest[p.stream] = (p.metric, p.session, p.value)
            else:
                key = (p.metric, p.session)
                self.deltas[key] = self.deltas.get(key, 0.0) + p.value

    def total(self, metric: str, session: str) -> float:
        return (self.deltas.get((metric, session), 0.0)
                + sum(v for m, s, v in self.latest.values() if m == metric and s == session))

    def sessions(self) -> dict[str, dict[str, float]]:
        """session -> {"usd": ..., "tokens": ...}: what the receiver writes down."""
        ids = {s for _, s in self.deltas} | {s for _, s, _ in self.latest.values()}
        return {s: {"usd": round(self.total(COST, s), 9), "tokens": round(self.total(TOKENS, s))} for s in sorted(ids)}


def _list(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _attributes(kvs: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for kv in _list(kvs):
        value = kv.get("value")
        if isinstance(kv.get("key"), str) and isinstance(value, dict) and value:
            out[kv["key"]] = next(iter(value.values()))
    return out


def _number(value: object) -> float | None:
    """asDouble is a number; asInt a number or, in protobuf's JSON mapping of int64, a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
