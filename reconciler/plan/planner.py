"""desired x observed -> ordered actions. Pure: no git, no processes, no files, no clock.

Everything read is plain data: the loaded spec, `Observed` (observe/model.py, filled by
an observer) and `now`. Importing this module loads neither GitPython nor psutil
(tests/test_planner.py checks it).

Order: stop orphans and undeclared sessions first (they free slots), then prunes,
then declared agents in file order, so caps are filled the way the file reads. A
session that has ended holds no slot, also while its gates run; a failed gate's
feedback resume takes a slot only if one is left after the agents that start now.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ..observe.model import PATH_NON_EMPTY_DIR, PATH_NOT_A_DIR, Observed, ObservedAgent
from ..runtimes import get_runtime
from ..spec.desired import DesiredAgent
from ..spec.loader import LoadedFleet
from ..store.records import DELIVERED, FAILED, RUNNING, SUCCEEDED
from .actions import BLOCKED, CREATE_WORKTREE, PRUNE, REPLACE, RESUME, RUN_GATE, SPAWN, STOP, WAIT, Action, Plan
from .budget import Budgets, Line, TierRuns, budgets, reservation, reservation_tokens, usd
from .delivery import plan_delivery
from .drift import explain
from .pilot import holds


@dataclass
class _Slots:
    """What new sessions may start, as the plan would leave things: caps and budgets."""

    fleet_cap: int | None
    tier_caps: dict[str, int | None]
    budgets: Budgets | None = None
    amounts: dict[str, float | None] = field(default_factory=dict)  # agent -> what its start reserves
    tokens: dict[str, float | None] = field(default_factory=dict)  # the same on token windows
    total: int = 0
    by_tier: dict[str, int] = field(default_factory=dict)
    refused: dict[str, Line] = field(default_factory=dict)  # agent -> the budget line that refused it

    def take(self, tier: str, agent: str = "") -> tuple[str, str | None] | None:
        """Take a slot (and reserve the agent's amount on its budgets), or return (why not, condition type)."""
        line = self.budgets.refusing(agent, tier) if self.budgets is not None else None
        if line is not None:
            self.refused[agent] = line
            return line.refusal(agent), "BudgetExhausted"
        if self.fleet_cap is not None and self.total >= self.fleet_cap:
            return f"concurrency.maxRunning={self.fleet_cap} reached ({self.total} running or starting)", None
        cap = self.tier_caps.get(tier)
        if cap is not None and self.by_tier.get(tier, 0) >= cap:
            return f"tier {tier} maxRunning={cap} reached ({self.by_tier.get(tier, 0)} running or starting)", None
        if self.budgets is not None:
            self.budgets.reserve(agent, tier, self.amounts.get(agent) or 0.0, self.tokens.get(agent) or 0.0)
        self.add(tier, 1)
        return None

    def add(self, tier: str | None, n: int) -> None:
        self.total += n
        if tier:
            self.by_tier[tier] = self.by_tier.get(tier, 0) + n


def plan(loaded: LoadedFleet, observed: Observed, now: datetime, *, targets: Iterable[str] = (),
         archive: bool = False) -> Plan:
    """The plan for `loaded` given `observed` at `now` (aware, UTC: backoff deadlines and the
    budget's day are read against it)."""
    if now.utcoffset() != timedelta(0):
        raise ValueError(f"plan() needs an aware UTC datetime, got {now!r}")
    spec = loaded.fleet.spec
    records = [a.record for a in observed.agents.values() if a.record]
    money = budgets(spec, records, live_spend(observed), now)
    runs = TierRuns(records)
    slots = _Slots(spec.concurrency.maxRunning, {n: t.maxRunning for n, t in spec.tiers.items()}, budgets=money,
                   amounts={a.name: reservation(a, runs, spec) for a in loaded.agents},
                   tokens={a.name: reservation_tokens(a, runs, spec) for a in loaded.agents}
                   if money.counts_tokens() else {})
    pilot_waits, projections = holds(loaded, observed, money)
    for live in observed.running():
        slots.add(live.record.tier if live.record else None, 1)
    desired = {a.name: a for a in loaded.agents}
    wanted = set(targets)

    def chosen(name: str) -> bool:
        return not wanted or name in wanted

    actions: list[Action] = []
    for proc in observed.orphans:
        if not chosen(proc.agent):
            continue
        kept = observed.agents.get(proc.agent)
        if desired[proc.agent].protect if proc.agent in desired else bool(kept and kept.protected):
            actions.append(Action(BLOCKED, proc.agent, f"unrecorded session pid {proc.pid} of a protected agent; "
                                  "fleet will not stop it", details={"pid": proc.pid}))
            continue
        why = ("belongs to undeclared agent " + proc.agent if proc.agent not in desired
               else "running session the state store does not know")
        actions.append(Action(STOP, proc.agent or f"pid-{proc.pid}", f"orphan: {why}",
                              details={"pid": proc.pid, "cmdline": proc.cmdline}))
    for name, obs in sorted(observed.agents.items()):
        if name not in desired and chosen(name):
            actions += _undeclared(obs, prune=spec.gc.prune, slots=slots, archive=archive)
    # hung sessions first: the slots they free go to agents waiting later in this same plan
    expired = {a.name: stop for a in loaded.agents if chosen(a.name)
               if (stop := _expired(a, observed.agents.get(a.name), slots, now)
                   or _over_budget(a, observed.agents.get(a.name), slots, spec.budget.onExhausted)) is not None}
    for agent in loaded.agents:
        if agent.name in expired:
            actions.append(expired[agent.name])
        elif chosen(agent.name) and agent.name in pilot_waits:
            actions += _pilot_wait(agent, observed.agents.get(agent.name), observed, pilot_waits[agent.name])
        elif chosen(agent.name):  # untargeted agents take no slots: --target X must not wait behind them
            actions += _declared(agent, observed.agents.get(agent.name), observed, slots, now)
    # an ended session waiting for its gates held no slot above; feeding a gate failure back
    # at once needs one, so it gets one only if the sessions starting now left one free
    # (else `resume` is False and the resume waits for the next pass)
    for i, action in enumerate(actions):
        if action.kind == RUN_GATE and action.details["resume"]:
            assert action.tier is not None  # a declared agent's action: it has a tier
            if slots.take(action.tier, action.agent) is not None:
                actions[i] = replace(action, details={**action.details, "resume": False})
            elif (desired_agent := desired.get(action.agent)) is not None:
                actions[i] = replace(action, details={**action.details, **_reservation_details(desired_agent, slots)})
    # another fleet's marked worktrees sharing the root are normal; only unmarked ones are news
    notes = tuple(f"foreign worktree {wt.path} (branch {wt.branch or 'detached'}) is not owned by "
                  f"fleet {loaded.name}; left alone" for wt in observed.foreign if wt.owner is None)
    notes += tuple(f"rollout {p.group}: {p.summary()}" + ("; promoted by `fleet promote`" if p.promoted else "")
                   for p in projections)
    # the merge queue last (plan/delivery.py): agents with another action this pass wait for it
    queue, queue_notes = plan_delivery(loaded, observed, busy={a.agent for a in actions},
                                       chosen=wanted or None)
    return Plan(fleet=loaded.name, actions=tuple(actions + queue),
                notes=notes + _elsewhere(loaded, observed) + queue_notes,
                budgets=tuple(line.to_json() for line in budgets(spec, records, live_spend(observed), now).lines),
                projections=tuple(p.to_json() for p in projections))


def live_spend(observed: Observed) -> dict[str, tuple[float, int]]:
    """Every running agent -> what its current run spent so far, from its log (nothing read: 0; tokens
    of an unpriced model count $0 here, their run is still held by its reservation)."""
    return {name: (a.live_usd or 0.0, a.live_tokens or 0) for name, a in observed.agents.items() if a.alive}


def _over_budget(agent: DesiredAgent, obs: ObservedAgent | None, slots: _Slots, policy: str) -> Action | None:
    """A stop for a running session over its own cap (runtimes fleet caps), or under a spent budget."""
    if obs is None or not obs.alive or obs.record is None or slots.budgets is None:
        return None
    rec = obs.record
    if (agent.tier.runtime != "claude" and rec.cap_usd and obs.live_usd is not None
            and obs.live_usd >= rec.cap_usd):  # claude stops itself at --max-budget-usd
        why = f"BudgetCapReached: spent {usd(obs.live_usd)} of this run's cap {usd(rec.cap_usd)}"
        slots.add(agent.tier_name, -1)
        return Action(STOP, agent.name, why, agent.tier_name, {"pid": rec.pid, "condition": "BudgetCapReached"})
    line = slots.budgets.reached(agent.name, agent.tier_name)
    if line is None or policy == "continue":
        return None
    why = f"BudgetExhausted: {line.refusal(agent.name)}"
    if agent.protect:
        return Action(BLOCKED, agent.name, f"{why}; protect: true, so fleet will not stop it", agent.tier_name)
    slots.add(agent.tier_name, -1)
    return Action(STOP, agent.name, why + ("; paused, resumed when the budget allows" if policy == "pause" else ""),
                  agent.tier_name, {"pid": rec.pid, "condition": "BudgetExhausted", "budget": policy})


def _pilot_wait(agent: DesiredAgent, obs: ObservedAgent | None, observed: Observed, why: str) -> list[Action]:
    """A group member waiting for its pilot: its worktree is not made yet either (nothing to spend on)."""
    return [Action(WAIT, agent.name, why, agent.tier_name, {"then": SPAWN, "condition": "Pilot"})]


def _elsewhere(loaded: LoadedFleet, observed: Observed) -> tuple[str, ...]:
    """A note when existing worktrees are not under `worktrees.root` (it was changed): they are
    used where they are, found by their ownership markers; the root is for new worktrees."""
    away = [a.name for a in loaded.agents
            if (o := observed.agents.get(a.name)) is not None and o.worktree is not None
            and o.worktree.path != a.worktree]
    if not away:
        return ()
    shown = ", ".join(away[:5]) + (f" and {len(away) - 5} more" if len(away) > 5 else "")
    return (f"worktrees.root is {loaded.worktrees_root}: it applies to new worktrees only; the existing "
            f"worktree(s) of {shown} stay where they are",)


def _expired(agent: DesiredAgent, obs: ObservedAgent | None, slots: _Slots, now: datetime) -> Action | None:
    """A stop for a running session past its `timeout` or silent past its `stallAfter`."""
    if obs is None or not obs.alive or obs.record is None or obs.record.spec_hash != agent.spec_hash:
        return None
    rec, t = obs.record, now.timestamp()
    why = condition = None
    ran = t - datetime.fromisoformat(rec.started_at).timestamp() if rec.started_at else 0.0
    idle = t - obs.last_progress if obs.last_progress is not None else 0.0
    if agent.timeout is not None and ran > agent.timeout:
        why, condition = f"DeadlineExceeded: ran {ran:.0f}s, timeout is {agent.timeout:g}s", "DeadlineExceeded"
    elif agent.stall_after is not None and idle > agent.stall_after:
        why, condition = (f"Stalled: no progress for {idle:.0f}s (log, transcript, index and HEAD unchanged; "
                          f"stallAfter is {agent.stall_after:g}s)"), "Stalled"
    if why is None:
        return None
    if agent.protect:
        return Action(BLOCKED, agent.name, f"{why}; protect: true, so fleet will not stop it", agent.tier_name)
    slots.add(agent.tier_name, -1)
    return Action(STOP, agent.name, why, agent.tier_name, {"pid": rec.pid, "condition": condition})


def _undeclared(obs: ObservedAgent, *, prune: bool, slots: _Slots, archive: bool = False,
                why: str = "agent is no longer declared") -> list[Action]:
    rec = obs.record
    tier = rec.tier if rec else None
    protected = obs.protected  # the record's protect, or the one kept in the marker and branch config
    if protected and (obs.alive or obs.worktree):
        return [Action(BLOCKED, obs.name, f"{why} but protect: true; fleet will not stop or prune it", tier)]
    out: list[Action] = []
    if obs.alive:
        out.append(Action(STOP, obs.name, why, tier, {"pid": rec.pid if rec else None}))
        slots.add(tier, -1)
    if not prune:
        return out
    wt, stake = obs.worktree, obs.at_stake
    if wt is None and stake is None:
        return out + [Action(PRUNE, obs.name, f"{why} (state record only)", tier)]
    # only the agent's own branch goes (observe: owned by this fleet); one the tree has checked out instead stays
    what: dict[str, object] = {"worktree": str(wt.path) if wt else None,
                               "branch": obs.branch if stake is not None else _branch(obs)}
    if wt is not None and wt.branch and wt.branch != what["branch"]:
        what["keptBranch"] = wt.branch
    if stake is not None and stake.ignored:
        what["ignored"] = {"count": len(stake.ignored), "bytes": stake.ignored_bytes, "some": stake.ignored[:5]}
    if wt is not None and wt.pruning is not None:  # a crash in `git worktree remove` (act/worktrees.py)
        why += "; finishing a prune that was interrupted"
    if stake is None or stake.safe:
        return out + [Action(PRUNE, obs.name, f"{why}; nothing unsaved or unmerged", tier, what)]
    at_stake = {"files": stake.dirty, "commits": stake.commits, "stashes": stake.stashes,
                "inProgress": stake.in_progress, "processes": stake.processes, "nestedRepos": stake.nested_repos,
                "locked": stake.locked, "protectedIgnored": stake.protected_ignored}
    if archive and stake.archivable:
        return out + [Action(PRUNE, obs.name, f"{why}; archiving first: {stake.summary()}", tier,
                             {**what, **at_stake, "archive": True})]
    hint = "" if archive or not stake.archivable else " (--archive saves it under refs/fleet/archive/ first)"
    return out + [Action(BLOCKED, obs.name, f"prune refused: {stake.summary()}{hint}", tier, {**what, **at_stake})]


def _branch(obs: ObservedAgent) -> str | None:
    return obs.branch or (obs.record.branch if obs.record else None)


def _declared(agent: DesiredAgent, obs: ObservedAgent | None, observed: Observed,
              slots: _Slots, now: datetime) -> list[Action]:
    obs = obs or ObservedAgent(agent.name)
    if obs.worktree is not None and obs.worktree.pruning is not None:
        return _finish_removal(agent, obs, slots)
    worktree = _worktree_actions(agent, obs, observed)
    if worktree and worktree[0].kind == BLOCKED:
        return worktree
    rec, phase = obs.record, obs.phase
    if rec is None or phase is None or rec.spec_hash is None:
        why = "new agent" if obs.worktree is None else "worktree exists, session not started yet"
        return worktree + [_start(SPAWN, agent, why, slots)]
    return worktree + _session_actions(agent, obs, slots, now)


def _finish_removal(agent: DesiredAgent, obs: ObservedAgent, slots: _Slots) -> list[Action]:
    """A declared agent whose worktree a `fleet delete` was removing when it died: finish the
    deletion (by the rules for what an interrupted prune left), then start the agent afresh,
    as an apply after a delete that completed would."""
    finish = _undeclared(obs, prune=True, slots=slots, why="deleted by request")
    if any(a.kind == BLOCKED for a in finish):
        return finish
    create = Action(CREATE_WORKTREE, agent.name, "re-creating it once its interrupted deletion is finished",
                    agent.tier_name, {"path": str(agent.worktree), "branch": agent.branch})
    return [*finish, create, _start(SPAWN, agent, "new agent", slots)]


def _worktree_actions(agent: DesiredAgent, obs: ObservedAgent, observed: Observed) -> list[Action]:
    """Create, repair, or refuse the agent's worktree; [] when it is in place."""
    tier = agent.tier_name
    wt = obs.worktree
    details = {"path": str(agent.worktree), "branch": agent.branch}
    if wt is not None and wt.owner is not None and wt.exists:
        return []
    if wt is not None:  # repaired where git has it, under whichever root it was made, on the branch it had
        details = {**details, "path": str(wt.path), **({"branch": wt.branch} if wt.branch else {})}
    if wt is not None and wt.owner is None:
        return [Action(CREATE_WORKTREE, agent.name, "finishing a worktree creation that was interrupted",
                       tier, {**details, "repair": "interrupted"})]
    if wt is not None:
        return [Action(CREATE_WORKTREE, agent.name, f"worktree directory {wt.path} was deleted; re-creating "
                       f"it on {details['branch']} (its commits are kept)", tier, {**details, "repair": "missing"})]
    if not observed.base_exists:
        return [Action(BLOCKED, agent.name, f"base ref {agent.base!r} does not exist in the repo", tier)]
    if agent.branch in observed.checked_out:
        return [Action(BLOCKED, agent.name, f"branch {agent.branch} is checked out at "
                       f"{observed.checked_out[agent.branch]}; fleet will not force it", tier)]
    at_path = observed.path_state(agent.worktree)
    if any(w.path == agent.worktree for w in observed.foreign) or at_path == PATH_NOT_A_DIR:
        return [Action(BLOCKED, agent.name, f"{agent.worktree} is a worktree this fleet does not own", tier)]
    if at_path == PATH_NON_EMPTY_DIR:
        return [Action(BLOCKED, agent.name, f"{agent.worktree} exists and is not empty; move it away", tier)]
    owned = agent.branch in observed.owned_branches
    if agent.branch in observed.branches and not owned:
        return [Action(BLOCKED, agent.name, f"branch {agent.branch} exists and is not owned by this "
                       "fleet; rename the agent or the branch", tier)]
    why = (f"no worktree; re-using this fleet's branch {agent.branch}" if owned
           else f"no worktree; branch {agent.branch} from {agent.base}")
    return [Action(CREATE_WORKTREE, agent.name, why, tier, details)]


def _session_actions(agent: DesiredAgent, obs: ObservedAgent, slots: _Slots, now: datetime) -> list[Action]:
    tier = agent.tier_name
    rec, phase = obs.record, obs.phase
    assert rec is not None and phase is not None
    drift = rec.spec_hash != agent.spec_hash
    changes = explain(rec.session_spec, agent.session_spec()) if drift else []
    if phase == RUNNING:
        if not drift:
            return []
        if agent.protect:
            return [Action(BLOCKED, agent.name, "spec changed but protect: true; not replacing the "
                           "running session", tier, {"changes": changes})]
        return [Action(REPLACE, agent.name, "spec changed: " + "; ".join(changes), tier,
                       {"changes": changes, "pid": rec.pid, "from": rec.spec_hash, "to": agent.spec_hash})]
    if drift:
        return [_start(SPAWN, agent, "spec changed: " + "; ".join(changes), slots, changes)]
    if phase == FAILED and rec.held:
        # its program did not start, or how it ended is unknown: a restart would fail the same
        # way or redo work that may be done; its condition says what a person should do
        return []
    resumable = get_runtime(agent.tier.runtime).can_resume and bool(rec.session_id)
    if rec.gates_pending:
        # no slot: the session has ended; `resume` is settled once the plan's starts took theirs (plan())
        return [Action(RUN_GATE, agent.name, f"session exited 0; run gates {', '.join(agent.gates) or '(none)'}",
                       tier, {"gates": list(agent.gates), "resume": resumable})]
    if rec.gate_feedback is not None and phase == FAILED:
        if not resumable:
            return []
        return [_start(RESUME, agent, "feed the failed gate's output back to the session", slots)]
    if phase == DELIVERED:  # Succeeded, and its work is in the delivery target (plan/delivery.py)
        phase = SUCCEEDED
    if phase == SUCCEEDED and agent.restart == "Always":
        return [_start(SPAWN, agent, "restart: Always (last run succeeded)", slots)]
    if phase == FAILED and agent.restart in ("OnFailure", "Always") and not rec.gates_exhausted:
        until = datetime.fromisoformat(rec.backoff_until) if rec.backoff_until else None
        if until is not None and until > now:
            wait = (until - now).total_seconds()
            return [Action(WAIT, agent.name, f"CrashLoopBackOff: {rec.restarts} failure(s) in a row; next "
                           f"restart in {-int(-wait // 1)}s", tier, {"then": RESUME if resumable else SPAWN,
                                                             "condition": "CrashLoopBackOff",
                                                             "backoffUntil": rec.backoff_until})]
        why = f"restart: {agent.restart} (last run failed, exit {obs.exit_code})"
        return [_start(RESUME if resumable else SPAWN, agent, why, slots)]
    if phase in (SUCCEEDED, FAILED):
        return []
    if rec.paused and resumable:
        return [_start(RESUME, agent, "resume the session a budget paused", slots)]
    return [_start(SPAWN, agent, f"{phase.lower()}: not started yet", slots)]


def _start(kind: str, agent: DesiredAgent, reason: str, slots: _Slots,
           changes: list[str] | None = None) -> Action:
    details: dict[str, object] = {"changes": changes} if changes else {}
    refused = slots.take(agent.tier_name, agent.name)
    if refused is not None:
        why, condition = refused
        if condition:
            details["condition"] = condition
        line = slots.refused.get(agent.name)
        if line is not None and line.resets_at is not None and line.reached(agent.name):
            details["resumesAt"] = line.resets_at.isoformat(timespec="seconds")
        return Action(WAIT, agent.name, f"{kind} waits: {why}", agent.tier_name, {"then": kind, **details})
    return Action(kind, agent.name, reason, agent.tier_name, {**details, **_reservation_details(agent, slots)})


def _reservation_details(agent: DesiredAgent, slots: _Slots) -> dict[str, object]:
    """`reserveUsd` (what the start reserved) and `capUsd` (its hard cap: the tier's maxUsdPerRun,
    else twice an estimated reservation, since a median is a typical run, not a ceiling, and
    claude fails a run that reaches its --max-budget-usd); nothing if no amount is known."""
    amount, tokens = slots.amounts.get(agent.name), slots.tokens.get(agent.name)
    held: dict[str, object] = {"reserveTokens": round(tokens)} if tokens is not None else {}  # on token windows
    if amount is None:
        return held
    return {"reserveUsd": round(amount, 6), "capUsd": round(agent.tier.maxUsdPerRun or 2 * amount, 6), **held}


def plan_delete(loaded: LoadedFleet, observed: Observed, names: Iterable[str] | None, *,
                archive: bool = False) -> Plan:
    """Stop and prune the named agents (all the fleet owns if None), with the prune safety rules."""
    chosen = set(names) if names is not None else set(observed.agents)
    slots = _Slots(None, {})
    actions: list[Action] = []
    for name in sorted(chosen):
        obs = observed.agents.get(name)
        if obs is None:
            continue
        desired = loaded.agent(name)
        if desired is not None and desired.protect:
            actions.append(Action(BLOCKED, name, "protect: true; fleet will not stop or prune it",
                                  desired.tier_name))
            continue
        actions += _undeclared(obs, prune=True, slots=slots, archive=archive, why="deleted by request")
    if names is None:
        actions[:0] = [Action(STOP, p.agent or f"pid-{p.pid}", "orphan session of this fleet",
                              details={"pid": p.pid, "cmdline": p.cmdline}) for p in observed.orphans]
    return Plan(fleet=loaded.name, actions=tuple(actions))
