"""Which notifications are due: a pure function of the status rows, what was seen before, and the time.

The loop (control/notify.py) compares each tick's rows with the facts it recorded at the
last one (the state store keeps them, so a restarted loop neither resends nor misses):

- `needs-attention`: an agent entered the Needs attention group (plan/status.py);
- `succeeded` / `failed`: its phase became Succeeded / Failed;
- `budget-exhausted`: some agent now waits for the daily budget, and none did before;
- `pilot-done`: no agent waits for a pilot any more (condition `Pilot…` or reason `Pilot…`),
  and some did before.

An agent seen for the first time is recorded, not announced: events are changes. Each
event goes to every `spec.notify` entry that lists it, unless that entry sent the same
event for the same agent less than its `debounce` ago. docs/fleet-yaml.md "Notifications".
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..spec.durations import parse_duration
from ..spec.models import Notify
from .status import NEEDS_ATTENTION, AgentStatus

FLEET_FACTS = "*fleet*"  # the facts key for what is not one agent's (budget, pilot)


@dataclass(frozen=True)
class Event:
    event: str
    fleet: str
    agent: str | None
    at: str
    phase: str | None = None
    previous_phase: str | None = None
    group: str | None = None
    reason: str | None = None
    agents: tuple[str, ...] = ()  # fleet-wide events: the agents concerned

    @property
    def id(self) -> str:
        return f"{self.fleet}/{self.agent or '-'}/{self.event}/{self.at}"

    def to_json(self, row: AgentStatus | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"apiVersion": "fleet/v1alpha1", "kind": "FleetEvent", "id": self.id,
                                "event": self.event, "fleet": self.fleet, "agent": self.agent, "at": self.at,
                                "phase": self.phase, "previousPhase": self.previous_phase, "group": self.group,
                                "reason": self.reason, "agents": list(self.agents)}
        if row is not None:
            data |= {"branch": row.branch, "tier": row.tier, "costUsd": row.cost_usd, "sessionId": row.session_id}
        return data


@dataclass(frozen=True)
class Delivery:
    notifier: int  # index in spec.notify
    event: Event


def facts(rows: list[AgentStatus]) -> dict[str, dict[str, Any]]:
    """What the next tick compares against: each agent's phase and group, and the fleet's waits."""
    out: dict[str, dict[str, Any]] = {r.agent: {"phase": r.phase, "group": r.group} for r in rows}
    out[FLEET_FACTS] = {"budget": sorted(r.agent for r in rows if _condition(r, "BudgetExhausted")),
                        "pilot": sorted(r.agent for r in rows if _waits_for_pilot(r))}
    return out


def transitions(fleet: str, rows: list[AgentStatus], before: dict[str, dict[str, Any]] | None,
                now: datetime) -> list[Event]:
    """The events between `before` (None: the first tick ever, nothing is announced) and `rows`."""
    if before is None:
        return []
    at = now.isoformat(timespec="milliseconds")
    events: list[Event] = []
    for r in rows:
        was = before.get(r.agent)
        if was is None:
            continue
        common = dict(fleet=fleet, agent=r.agent, at=at, phase=r.phase, previous_phase=was.get("phase"),
                      group=r.group, reason=r.reason)
        if r.group == NEEDS_ATTENTION and was.get("group") != NEEDS_ATTENTION:
            events.append(Event("needs-attention", **common))  # type: ignore[arg-type]
        if r.phase != was.get("phase") and r.phase in ("Succeeded", "Failed"):
            events.append(Event(r.phase.lower(), **common))  # type: ignore[arg-type]
    now_facts, was_fleet = facts(rows)[FLEET_FACTS], before.get(FLEET_FACTS, {})
    if now_facts["budget"] and not was_fleet.get("budget"):
        events.append(Event("budget-exhausted", fleet, None, at, agents=tuple(now_facts["budget"]),
                            reason="the daily budget is spent: spawns and resumes wait"))
    if was_fleet.get("pilot") and not now_facts["pilot"]:
        events.append(Event("pilot-done", fleet, None, at, agents=tuple(was_fleet["pilot"]),
                            reason="no agent waits for a pilot any more"))
    return events


def deliveries(events: list[Event], notify: list[Notify], sent: dict[str, str], now: datetime) -> list[Delivery]:
    """Each event for each entry that wants it, less what that entry's debounce holds back.
    `sent`: debounce key -> when it was last sent (ISO); see `debounce_key`."""
    out = []
    for i, entry in enumerate(notify):
        for event in events:
            if event.event not in entry.events:
                continue
            last = sent.get(debounce_key(i, event))
            if last and now - datetime.fromisoformat(last) < timedelta(seconds=parse_duration(entry.debounce)):
                continue
            out.append(Delivery(i, event))
    return out


def debounce_key(notifier: int, event: Event) -> str:
    return f"{notifier}/{event.agent or '-'}/{event.event}"


def _condition(row: AgentStatus, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in row.conditions)


def _waits_for_pilot(row: AgentStatus) -> bool:
    if row.phase != "Pending":
        return False
    if (row.reason or "").startswith("Pilot"):
        return True
    return any(str(c.get("type", "")).startswith("Pilot") and c.get("status") == "True" for c in row.conditions)
