"""The merge queue, planned: which agent branches go into the delivery target, in what order,
and why the others do not (docs/delivery.md). Pure: plain data in, actions and notes out.

Level-triggered: nothing is remembered between passes but the records' verdicts. Each pass
the queue is rebuilt from what is observed: an agent whose run Succeeded (its gates passed),
whose spec is the declared one, whose branch has work the target lacks, approved where
approval is required, and with no verdict yet on its branch's current tip. A verdict
(Conflicted, IntegrationFailed, OutOfScope, NothingToDeliver, Rejected) holds for the tip
it was reached on: the agent's next run moves its branch, and it is queued again. Entries
are keyed by branch and tip, ordered by when their run ended (then file order).

The steps are plan actions, so `fleet diff` shows the queue and `fleet apply` does it:
`merge` (integrate, gate, move the target: act/delivery.py), `deliver` (record a verdict
reached without merging: already in the target, out of scope, nothing to deliver, or an
interrupted delivery that landed) and `push` (the target, and its pull request).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..observe.model import BranchFacts, DeliveryFacts, Observed
from ..spec.globs import match
from ..store.records import DELIVERED, SUCCEEDED, SessionRecord
from .actions import BLOCKED, DELIVER, MERGE, PUSH, Action

if TYPE_CHECKING:  # annotations only: `fleet status` from the loop's snapshot loads no fleet file (pydantic)
    from ..spec.desired import DesiredAgent
    from ..spec.loader import LoadedFleet

# verdicts on one tip of an agent's branch: it is not queued again until the branch moves
VERDICTS = ("Conflicted", "IntegrationFailed", "OutOfScope", "NothingToDeliver", "Rejected")
_SHOWN = 5


@dataclass(frozen=True)
class Entry:
    agent: DesiredAgent
    facts: BranchFacts
    ended: str  # when its run ended: the queue's order


def plan_delivery(loaded: LoadedFleet, observed: Observed, busy: Iterable[str] = (),
                  chosen: Iterable[str] | None = None) -> tuple[list[Action], tuple[str, ...]]:
    """The queue's actions and notes for this pass. `busy`: agents with other actions in this
    plan (a spawn, resume or gate run first); `chosen`: `--target` names, None for all."""
    delivery = loaded.fleet.spec.delivery
    if delivery is None:
        return [], ()
    facts = observed.delivery
    notes = list(overlap_notes(loaded.agents))
    if facts is None:
        return [], (*notes, "spec.delivery: this engine did not observe the delivery target; no queue this pass")
    notes += behind_notes(loaded.agents, facts)
    wanted = set(chosen) if chosen is not None else None
    skip = set(busy)
    actions: list[Action] = []
    entries: list[Entry] = []
    waiting: list[DesiredAgent] = []  # approval-waiting: reviewed in their own pull request (perAgent)
    for agent in loaded.agents:
        if wanted is not None and agent.name not in wanted:
            continue
        step = _agent_step(agent, observed, facts, skip, delivery.approval == "required", notes, waiting)
        if isinstance(step, Entry):
            entries.append(step)
        elif step is not None:
            actions.append(step)
    entries = _dedupe(sorted(entries, key=lambda e: (e.ended, e.agent.index)))
    if entries and facts.checked_out is not None:
        for e in entries:
            actions.append(Action(BLOCKED, e.agent.name, f"delivery target {facts.into} is checked out at "
                                  f"{facts.checked_out}; fleet moves it only with update-ref, which would leave "
                                  "that checkout's files behind: check out another branch there", e.agent.tier_name))
        return actions, tuple(notes)
    actions += agent_pull_requests(loaded, observed, facts, [e.agent for e in entries] + waiting, notes)
    batches = [entries[i:i + delivery.batch] for i in range(0, len(entries), delivery.batch)]
    n = len(entries)
    position = 0
    for batch in batches:
        names = [e.agent.name for e in batch]
        for k, e in enumerate(batch):
            position += 1
            where = f"into {facts.into} (queue {position} of {n})"
            if len(batch) > 1:
                where += f", batch {', '.join(names)}"
            gates = ", ".join(delivery.gates) or "none (ungated: true)"
            details = {"into": facts.into, "strategy": delivery.strategy, "sha": e.facts.tip,
                       "position": position, "of": n, "gates": list(delivery.gates),
                       "create": facts.target_tip is None, "behind": e.facts.behind_target,
                       "batch": names if k == 0 and len(batch) > 1 else [],
                       "batchOf": names[0] if k > 0 else None}
            actions.append(Action(MERGE, e.agent.name, f"{where}: {delivery.strategy}, then gates {gates}",
                                  e.agent.tier_name, details))
    if delivery.push is not None and (facts.target_tip is not None or entries):
        if entries or facts.target_tip != facts.remote_tip:
            target = f"{delivery.push.remote}/{facts.into}"
            pr = delivery.pullRequest
            target_pr = pr is not None and pr.base is not None
            why = (f"{facts.into} to {target}" + (" after the merges" if entries else
                   f" ({target} is {'missing' if facts.remote_tip is None else 'behind'})")
                   + (f"; pull request {facts.into} -> {pr.base} on {pr.repo}" if pr and target_pr else ""))
            actions.append(Action(PUSH, facts.into, why, None,
                                  {"remote": delivery.push.remote, "into": facts.into,
                                   "pullRequest": target_pr}))
    pushed = facts.target_tip is not None and (facts.target_tip == facts.remote_tip or any(
        a.kind == PUSH and a.agent == facts.into for a in actions))
    actions += closed_pull_requests(loaded, observed, facts, wanted, pushed)
    return actions, tuple(notes)


def agent_pull_requests(loaded: LoadedFleet, observed: Observed, facts: DeliveryFacts,
                        ready: Sequence[DesiredAgent], notes: list[str]) -> list[Action]:
    """`pullRequest.perAgent`: a `push` of each queued or approval-waiting agent's branch (never
    forced) with its pull request into the target opened or updated, when the branch's tip is
    not yet on the remote or the recorded pull request was made for another tip. Planned before
    the merges, so the pull request exists (and carries the packet) before the agent lands."""
    delivery = loaded.fleet.spec.delivery
    assert delivery is not None
    pr = delivery.pullRequest
    if pr is None or not pr.perAgent or delivery.push is None:
        return []
    remote = delivery.push.remote
    out: list[Action] = []
    for agent in ready:
        bf = facts.branches.get(agent.name)
        obs = observed.agents.get(agent.name)
        rec = obs.record if obs is not None else None
        if bf is None or rec is None:
            continue
        known = rec.delivery.get("pullRequest") or {}
        if known.get("sha") == bf.tip and bf.remote_tip == bf.tip:
            continue
        if facts.remote_tip is None:  # GitHub opens a pull request only into a branch it has
            notes.append(f"{agent.name}: its pull request into {facts.into} waits until {facts.into} is on "
                         f"{remote} (pushed after the first delivery)")
            continue
        verb = "update" if known.get("number") else "open"
        out.append(Action(PUSH, agent.name, f"{agent.branch} to {remote}/{agent.branch}; {verb} its pull request "
                          f"-> {facts.into} on {pr.repo}", agent.tier_name,
                          {"remote": remote, "branch": agent.branch, "into": facts.into, "sha": bf.tip,
                           "pullRequest": "agent", "number": known.get("number")}))
    return out


def closed_pull_requests(loaded: LoadedFleet, observed: Observed, facts: DeliveryFacts,
                         wanted: set[str] | None, pushed: bool) -> list[Action]:
    """A delivered agent's open pull request: with `strategy: merge` its tip is in the pushed
    target, and GitHub marks it merged by itself; squash and rebase put new commits there, which
    GitHub cannot match, so fleet closes it with a comment saying where the work landed
    (a `deliver` step `pr-close`, once the target is on the remote)."""
    delivery = loaded.fleet.spec.delivery
    assert delivery is not None
    pr = delivery.pullRequest
    if pr is None or not pr.perAgent or delivery.strategy == "merge" or not pushed:
        return []
    out: list[Action] = []
    for agent in loaded.agents:
        obs = observed.agents.get(agent.name)
        rec = obs.record if obs is not None else None
        if rec is None or rec.phase != DELIVERED or (wanted is not None and agent.name not in wanted):
            continue
        known = rec.delivery.get("pullRequest") or {}
        if known.get("state") == "open" and known.get("number"):
            out.append(Action(DELIVER, agent.name, f"close its pull request #{known['number']} with a comment: "
                              f"delivered into {facts.into} by {delivery.strategy}", agent.tier_name,
                              {"step": "pr-close", "number": known["number"], "sha": known.get("sha"),
                               "result": rec.delivery.get("result")}))
    return out


def _agent_step(agent: DesiredAgent, observed: Observed, facts: DeliveryFacts, busy: set[str],
                approval: bool, notes: list[str], waiting: list[DesiredAgent]) -> Entry | Action | None:
    obs = observed.agents.get(agent.name)
    bf = facts.branches.get(agent.name)
    if not agent.deliver or obs is None or obs.record is None or bf is None or obs.alive or agent.name in busy:
        return None
    rec = obs.record
    if rec.spec_hash != agent.spec_hash:
        return None
    tier = agent.tier_name
    pending = rec.delivery.get("pending") or {}
    if pending.get("sha") == bf.tip and bf.landed:
        return Action(DELIVER, agent.name, f"an interrupted delivery landed in {facts.into}: record it Delivered",
                      tier, {"step": "landed", "sha": bf.tip, "result": pending.get("result")})
    if obs.phase != SUCCEEDED or rec.phase == DELIVERED:
        return None
    if bf.in_target:
        return Action(DELIVER, agent.name, f"its branch is in {facts.into} already: Delivered", tier,
                      {"step": "in-target", "sha": bf.tip})
    verdict = rec.delivery.get("state")
    if verdict in VERDICTS and rec.delivery.get("sha") == bf.tip:
        return None  # decided for this tip; the agent's next run (or a person's commit) moves it
    if not bf.changed:
        # an empty or restarted run's commits are not work: never "delivered" as if they were
        # (decided before approval: a branch with nothing to deliver has nothing to review)
        return Action(DELIVER, agent.name, f"NothingToDeliver: its branch changes no file against {facts.into}",
                      tier, {"step": "nothing", "sha": bf.tip})
    if approval and (rec.delivery.get("approved") or {}).get("sha") != bf.tip:
        notes.append(f"{agent.name} waits for approval before it enters the queue: `fleet review` it, then "
                     f"`fleet approve FILE {agent.name}` (or `fleet reject FILE {agent.name} -m ...`)")
        if not out_of_scope(agent.paths, bf.changed):
            waiting.append(agent)
        return None
    outside = out_of_scope(agent.paths, bf.changed)
    if outside:
        shown = ", ".join(outside[:_SHOWN]) + (f" and {len(outside) - _SHOWN} more" if len(outside) > _SHOWN else "")
        return Action(DELIVER, agent.name, f"OutOfScope: changed {shown} outside its paths "
                      f"({', '.join(agent.paths)}); not delivered", tier,
                      {"step": "scope", "sha": bf.tip, "files": outside, "paths": list(agent.paths),
                       "resume": _resumable(rec)})
    return Entry(agent, bf, rec.finished_at or "")


def _resumable(rec: SessionRecord) -> bool:
    return bool(rec.session_id)


def _dedupe(entries: list[Entry]) -> list[Entry]:
    """One entry per (branch, tip): two names for one branch never merge it twice."""
    seen: set[tuple[str, str]] = set()
    out: list[Entry] = []
    for e in entries:
        key = (e.agent.branch, e.facts.tip)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def out_of_scope(paths: Sequence[str], changed: Sequence[str]) -> list[str]:
    """The changed files no glob of `paths` matches (none: the agent has no declared scope)."""
    if not paths:
        return []
    inside: set[str] = set()
    for glob in paths:
        inside.update(match(glob, changed))
    return [f for f in changed if f not in inside]


def overlap_notes(agents: Sequence[DesiredAgent]) -> list[str]:
    """A warning per pair of agents whose declared `paths` may cover one file: their branches
    are likely to conflict in the queue (decided from the patterns alone, before anything runs)."""
    out: list[str] = []
    scoped = [a for a in agents if a.paths and a.deliver]
    for i, a in enumerate(scoped):
        for b in scoped[i + 1:]:
            pairs = [(p, q) for p in a.paths for q in b.paths if globs_overlap(p, q)]
            if pairs:
                p, q = pairs[0]
                out.append(f"paths of {a.name} ({p}) and {b.name} ({q}) overlap: their changes may conflict "
                           "in the delivery queue")
    return out


def globs_overlap(p: str, q: str) -> bool:
    """Can one file match both globs? Each is cut at its first wildcard; they may overlap when one
    literal prefix contains the other (component-wise), and two literal paths only when equal.
    Conservative: a warning that may be needless, never one missed for a shared literal prefix."""
    lp, lq = _literal(p), _literal(q)
    if lp == p.split("/") and lq == q.split("/"):
        return lp == lq
    if lp == p.split("/"):
        return bool(match(q, ["/".join(lp)]))
    if lq == q.split("/"):
        return bool(match(p, ["/".join(lq)]))
    n = min(len(lp), len(lq))
    return lp[:n] == lq[:n]


def _literal(glob: str) -> list[str]:
    parts = glob.split("/")
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return parts[:i]
    return parts


def behind_notes(agents: Sequence[DesiredAgent], facts: DeliveryFacts) -> list[str]:
    out = []
    for agent in agents:
        bf = facts.branches.get(agent.name)
        if bf is not None and agent.deliver and not bf.in_target and bf.behind_base:
            out.append(f"{agent.name}: BehindBase: {bf.behind_base} commits (its fork point is behind the base)")
    return out


def delivery_status(agent: DesiredAgent | None, rec: SessionRecord | None, facts: DeliveryFacts | None,
                    queued: dict[str, str]) -> tuple[str | None, int | None]:
    """(delivery column, commits behind base) for one status row."""
    if agent is None or facts is None:
        return None, None
    bf = facts.branches.get(agent.name)
    behind = bf.behind_base if bf is not None else None
    if not agent.deliver:
        return "not delivered (deliver: false)", behind
    if agent.name in queued:
        return queued[agent.name], behind
    if rec is None:
        return None, behind
    if rec.phase == DELIVERED:
        return f"Delivered into {facts.into}", behind
    state = rec.delivery.get("state")
    if state in VERDICTS and bf is not None and rec.delivery.get("sha") == bf.tip:
        files = rec.delivery.get("files") or []
        return state + (f": {', '.join(files[:_SHOWN])}" if files else ""), behind
    return None, behind
