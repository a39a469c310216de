"""Pilot runs of a forEach group (`rollout: {pilot: N}`): pure, the planner's.

The group's first N agents start; the rest wait (reason `Pilot`) until every pilot
Succeeded with its gates passed. A pilot that failed for good (no restart will come:
its gates gave up, `restart: Never`, a program that cannot start, an operator's hold)
is named in the reason with what to do, rather than left to wait silently. Then the
group's spend is projected (the pilots' median cost x the group's size) and the rest
start only if what they would cost fits what the budgets they fall under have left;
`fleet promote GROUP` overrides that on purpose (Observed.promoted). A member that has
run once is never held back again.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from ..observe.model import Observed
from ..runtimes import get_runtime
from ..spec.desired import DesiredAgent
from ..spec.loader import LoadedFleet
from ..store.records import FAILED, SUCCEEDED
from .budget import Budgets, usd


@dataclass(frozen=True)
class Projection:
    group: str
    size: int
    pilots: tuple[str, ...]
    waiting: int  # members not started yet
    median_usd: float | None  # None until every pilot passed
    left_usd: float | None  # what the budgets have left; None: no USD budget applies
    promoted: bool
    failed: tuple[tuple[str, str], ...] = ()  # pilots that failed for good: (agent, why no restart comes)

    @property
    def projected_usd(self) -> float | None:
        return None if self.median_usd is None else self.median_usd * self.size

    @property
    def rest_usd(self) -> float | None:
        return None if self.median_usd is None else self.median_usd * self.waiting

    @property
    def fits(self) -> bool:
        return self.promoted or self.left_usd is None or (self.rest_usd or 0.0) <= self.left_usd

    def summary(self) -> str:
        if self.failed and self.median_usd is None:
            which = "; ".join(f"{name}: {why}" for name, why in self.failed)
            return (f"pilot run(s) of {self.group} failed for good ({which}); fix and restart the pilot, "
                    f"change the file, or `fleet promote {self.group}` to start the rest anyway")
        if self.median_usd is None:
            return f"pilot {', '.join(self.pilots)} of {self.group}: waiting for it to succeed with its gates passed"
        text = (f"projected {usd(self.projected_usd or 0)} for {self.size} agents "
                f"({usd(self.rest_usd or 0)} for the {self.waiting} not started)")
        if self.left_usd is not None:
            text += f"; budget left {usd(max(0.0, self.left_usd))}"
        return text

    def to_json(self) -> dict[str, object]:
        return {"group": self.group, "size": self.size, "pilots": list(self.pilots), "waiting": self.waiting,
                "pilotMedianUsd": self.median_usd, "projectedUsd": self.projected_usd, "restUsd": self.rest_usd,
                "budgetLeftUsd": self.left_usd, "promoted": self.promoted, "fits": self.fits,
                "failedPilots": [name for name, _ in self.failed]}


def groups(loaded: LoadedFleet) -> dict[int, tuple[str, int, list[DesiredAgent]]]:
    """index in spec.agents -> (group name, pilot size, members in file order), for groups with a rollout."""
    out: dict[int, tuple[str, int, list[DesiredAgent]]] = {}
    for index, template in enumerate(loaded.fleet.spec.agents):
        if template.rollout is not None:
            out[index] = (template.name, template.rollout.pilot, [a for a in loaded.agents if a.index == index])
    return out


def projection(loaded: LoadedFleet, observed: Observed, budgets: Budgets, index: int) -> Projection | None:
    found = groups(loaded).get(index)
    if found is None:
        return None
    name, pilot, members = found
    pilots = members[:pilot]
    waiting = [a for a in members[pilot:] if not _started(observed, a)]
    median = None
    if all(_passed(observed, a) for a in pilots):
        costs = [r.cost_usd for a in pilots if (r := observed.agents[a.name].record) is not None]
        median = statistics.median(costs) if costs else 0.0
    tier = pilots[0].tier_name if pilots else None
    failed = tuple((a.name, why) for a in pilots if (why := _failed_for_good(observed, a)) is not None)
    return Projection(group=name, size=len(members), pilots=tuple(a.name for a in pilots), waiting=len(waiting),
                      median_usd=median, left_usd=budgets.left(tier), promoted=name in observed.promoted,
                      failed=failed)


def holds(loaded: LoadedFleet, observed: Observed, budgets: Budgets) -> tuple[dict[str, str], list[Projection]]:
    """(agent -> why it waits for its group's pilot, every group's projection), decided once per
    plan against the budgets as they stand before it (so a group is promoted whole or not at all)."""
    waits: dict[str, str] = {}
    projections: list[Projection] = []
    for index, (name, pilot, members) in groups(loaded).items():
        proj = projection(loaded, observed, budgets, index)
        assert proj is not None
        projections.append(proj)
        if proj.promoted:
            continue
        if proj.failed and proj.median_usd is None:
            why = f"Pilot: {proj.summary()}"
        elif proj.median_usd is None:
            why = f"Pilot: waiting for pilot run(s) {', '.join(proj.pilots)} to succeed with their gates passed"
        elif proj.fits:
            continue
        else:
            why = f"Pilot: {proj.summary()}; `fleet promote {name}` starts them anyway"
        for agent in members[pilot:]:
            if not _started(observed, agent):
                waits[agent.name] = why
    return waits, projections


def _started(observed: Observed, agent: DesiredAgent) -> bool:
    obs = observed.agents.get(agent.name)
    return obs is not None and obs.record is not None and obs.record.spec_hash is not None


def _failed_for_good(observed: Observed, agent: DesiredAgent) -> str | None:
    """Why no restart will come for this Failed pilot (the planner's restart rules), else None."""
    obs = observed.agents.get(agent.name)
    rec = obs.record if obs else None
    if obs is None or rec is None or obs.phase != FAILED or rec.spec_hash != agent.spec_hash:
        return None  # a changed spec starts it afresh
    if rec.held:
        return rec.held if len(rec.held) <= 80 else rec.held[:77] + "..."
    if rec.gates_exhausted:
        gate = rec.last_gate.get("name") if isinstance(rec.last_gate, dict) else None
        return f"gate {gate} failed maxAttempts times" if gate else "its gates failed maxAttempts times"
    if rec.gate_feedback is not None and not (get_runtime(agent.tier.runtime).can_resume and rec.session_id):
        return "its gate failed and its runtime cannot resume"
    if agent.restart == "Never":
        return "restart: Never"
    return None


def _passed(observed: Observed, agent: DesiredAgent) -> bool:
    obs = observed.agents.get(agent.name)
    rec = obs.record if obs else None
    return (rec is not None and obs is not None and obs.phase == SUCCEEDED and not rec.gates_pending
            and rec.spec_hash == agent.spec_hash)
