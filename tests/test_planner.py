"""The planner as a pure function: tables of (spec, observed state) -> the exact actions.

No git, no processes, no files and a fixed clock: each row builds the fleet from a
document in memory (`load_fleet_text`), the observed state as plain data
(observe/model.py), and calls `plan` / `plan_delete` directly. The CLI tests
(test_apply.py, test_gates.py, ...) cover the same behaviour end to end.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from reconciler.observe.gitrepo import AtStake  # only the type: no repo is opened
from reconciler.observe.model import (
    PATH_EMPTY_DIR,
    PATH_NON_EMPTY_DIR,
    PATH_NOT_A_DIR,
    Observed,
    ObservedAgent,
    OwnedProcess,
    Owner,
    PruneIntent,
    Worktree,
)
from reconciler.plan.actions import BLOCKED, CREATE_WORKTREE, PRUNE, REPLACE, RESUME, RUN_GATE, SPAWN, STOP, WAIT, Plan
from reconciler.plan.planner import plan, plan_delete
from reconciler.spec.loader import LoadedFleet, load_fleet_text
from reconciler.store.records import FAILED, PENDING, RUNNING, SUCCEEDED, SessionRecord

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
TODAY, YESTERDAY = "2025-06-01T09:00:00+00:00", "2025-05-31T09:00:00+00:00"
REPO = Path("/nonexistent/fleet-planner-tests/repo")  # never touched: paths are only compared
REPO_ID = str(REPO / ".git")
WT = REPO / ".fleet" / "worktrees"
TIERS = {"cmd": {"runtime": "command"}, "aid": {"runtime": "aider"}}  # command resumes, aider cannot


# --- building the inputs ---------------------------------------------------------------------------------

def agent(name: str, tier: str = "cmd", **fields: Any) -> dict[str, Any]:
    """One entry of spec.agents."""
    doc: dict[str, Any] = {"name": name, "tier": tier, **fields}
    if TIERS[tier]["runtime"] == "command":
        doc.setdefault("command", ["work", name])
    else:
        doc.setdefault("prompt", f"work on {name}")
    return doc


def load(agents: list[dict[str, Any]], spec: Mapping[str, Any]) -> LoadedFleet:
    doc = {"apiVersion": "fleet/v1alpha1", "kind": "Fleet", "metadata": {"name": "t"},
           "spec": {"tiers": TIERS, **spec, "agents": agents}}
    # JSON is YAML: the loader's own text entry point, with no file and no glob read
    return load_fleet_text(json.dumps(doc), path=REPO / "fleet.yaml", shown="fleet.yaml", files=[])


@dataclass(frozen=True)
class Seen:
    """An agent as observed, relative to its declared spec (if any)."""

    phase: str | None = None  # the record's phase; None: no record
    alive: bool = False
    # "ok" owned and there | "none" | "deleted" (owned, directory gone) | "unmarked" | "pruning" (owned, its
    # removal interrupted: act/worktrees.py left its intent in the admin dir)
    tree: str = "ok"
    drift: bool = False  # the record was made from another spec (the prompt changed)
    stake: AtStake | None = None
    # ObservedAgent.branch: the fleet's own branch a prune deletes (observe sets it for each prune
    # candidate; default here: the agent's branch when `stake` is given), or one left without a worktree
    branch: str | None = None
    checked_out: str | None = None  # the branch the tree has checked out, when not the agent's own
    own_gone: bool = False  # the agent's own branch does not exist (observe leaves ObservedAgent.branch None)
    progress_ago: float | None = None  # seconds since the session last showed progress
    started_ago: float | None = None  # seconds since the session started
    rec: Mapping[str, Any] = field(default_factory=dict)  # further SessionRecord fields
    kept: Mapping[str, bool] = field(default_factory=dict)  # ObservedAgent.protect_kept (marker, branch)


def observe(loaded: LoadedFleet, seen: Mapping[str, Seen], **facts: Any) -> Observed:
    agents: dict[str, ObservedAgent] = {}
    for name, s in seen.items():
        desired = loaded.agent(name)
        branch = desired.branch if desired else f"fleet/t/{name}"
        own = s.branch if s.branch is not None else branch if s.stake is not None and s.tree != "none" else None
        own = None if s.own_gone else own
        obs = ObservedAgent(name, alive=s.alive, at_stake=s.stake, branch=own, protect_kept=dict(s.kept))
        if s.tree != "none":
            owner = None if s.tree == "unmarked" else Owner("t", REPO_ID, name, branch)
            obs.worktree = Worktree(WT / name, head="c0ffee1", branch=s.checked_out or branch, owner=owner,
                                    exists=s.tree != "deleted",
                                    pruning=PruneIntent("refs/fleet/archive/t/x/1", "ab12") if s.tree == "pruning"
                                    else None)
        if s.phase is not None:
            spec = desired.session_spec() if desired else {"prompt": "gone"}
            if s.drift:
                spec = {**spec, "prompt": "old prompt"}
            rec = SessionRecord(agent=name, fleet="t", phase=s.phase, tier=desired.tier_name if desired else "cmd",
                                branch=branch, worktree=str(WT / name), session_spec=spec,
                                spec_hash="0ld5pec0ld5p" if s.drift or desired is None else desired.spec_hash,
                                pid=4000 + len(agents) if s.phase == RUNNING else None, session_id=f"sess-{name}",
                                started_at=(NOW - timedelta(seconds=s.started_ago)).isoformat()
                                if s.started_ago is not None else None)
            for key, value in s.rec.items():
                setattr(rec, key, value)
            obs.record = rec
        if s.progress_ago is not None:
            obs.last_progress = NOW.timestamp() - s.progress_ago
        agents[name] = obs
    for name, usd in facts.pop("live", {}).items():  # a running session's live spend (observe/live.py)
        agents[name].live_usd, agents[name].live_tokens = usd if isinstance(usd, tuple) else (usd, 0)
    return Observed(base_exists=facts.pop("base_exists", True),
                    agents=agents, **facts)


@dataclass(frozen=True)
class E:
    """An expected action: its kind and agent, a substring of its reason, and details it must carry."""

    kind: str
    agent: str
    why: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def e(kind: str, agent: str, why: str | None = None, **details: Any) -> E:
    return E(kind, agent, why, details)


def check(result: Plan, expected: list[E]) -> None:
    assert [(a.kind, a.agent) for a in result.actions] == [(x.kind, x.agent) for x in expected], result.actions
    for action, want in zip(result.actions, expected, strict=True):
        if want.why is not None:
            assert want.why in action.reason, (action, want)
        for key, value in want.details.items():
            assert action.details.get(key) == value, (key, action, want)


@dataclass(frozen=True)
class Row:
    agents: list[dict[str, Any]]
    seen: Mapping[str, Seen]
    expected: list[E]
    spec: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)  # more Observed fields
    targets: tuple[str, ...] = ()
    archive: bool = False


def row(id: str, agents: list[dict[str, Any]], seen: Mapping[str, Seen], expected: list[E], **kw: Any) -> Any:
    return pytest.param(Row(agents, seen, expected, **kw), id=id)


def run(r: Row) -> Plan:
    loaded = load(r.agents, r.spec)
    return plan(loaded, observe(loaded, r.seen, **r.facts), NOW, targets=r.targets, archive=r.archive)


READY = Seen()  # worktree in place, no session yet
LIVE = Seen(RUNNING, alive=True)
DONE = Seen(SUCCEEDED, rec={"exit_code": 0})
GATED = Seen(PENDING, rec={"exit_code": 0, "gates_pending": True, "gates": ["lint"]})  # exited 0, gates to run
GATE_FAILED = Seen(FAILED, rec={"exit_code": 0, "gate_feedback": "The quality gate `lint` failed ..."})


def failed(code: int = 1, **rec: Any) -> Seen:
    return Seen(FAILED, rec={"exit_code": code, "restarts": 1, **rec})


def spent(usd: float, at: str = TODAY) -> Seen:
    return Seen(SUCCEEDED, rec={"exit_code": 0, "ledger": {"run-1": {"usd": usd, "at": at}}})


def stake(**kw: Any) -> AtStake:
    return AtStake(**kw)


GATES = {"lint": {"run": "make lint"}}
CAP1 = {"concurrency": {"maxRunning": 1}}
HALF_HOUR = timedelta(minutes=30)
SOON, PAST = (NOW + timedelta(seconds=30)).isoformat(), (NOW - timedelta(seconds=1)).isoformat()


# --- caps --------------------------------------------------------------------------------------------------

CAPS = [
    row("global cap fills in file order", [agent("a"), agent("b"), agent("c")], {"a": READY, "b": READY, "c": READY},
        [e(SPAWN, "a"), e(SPAWN, "b"), e(WAIT, "c", "concurrency.maxRunning=2 reached (2 running or starting)",
                                          then=SPAWN)],
        spec={"concurrency": {"maxRunning": 2}}),
    row("global cap counts running sessions", [agent("a"), agent("b")], {"a": LIVE, "b": READY},
        [e(WAIT, "b", "spawn waits: concurrency.maxRunning=1 reached (1 running or starting)", then=SPAWN)],
        spec=CAP1),
    row("tier cap holds its tier only", [agent("a"), agent("b"), agent("c", "aid")],
        {"a": LIVE, "b": READY, "c": READY},
        [e(WAIT, "b", "tier cmd maxRunning=1 reached (1 running or starting)", then=SPAWN), e(SPAWN, "c")],
        spec={"tiers": {**TIERS, "cmd": {"runtime": "command", "maxRunning": 1}}}),
    row("new agents create worktrees and spawn under the cap", [agent("a"), agent("b")], {},
        [e(CREATE_WORKTREE, "a", "no worktree; branch fleet/t/a from main", path=str(WT / "a"), branch="fleet/t/a"),
         e(SPAWN, "a", "new agent"), e(CREATE_WORKTREE, "b"), e(WAIT, "b", "maxRunning=1 reached", then=SPAWN)],
        spec=CAP1),
    row("untargeted agents take no slots with --target", [agent("a"), agent("b")], {"a": READY, "b": READY},
        [e(SPAWN, "b", "worktree exists, session not started yet")], spec=CAP1, targets=("b",)),
    row("stopping an undeclared session frees its slot in the same plan", [agent("a")],
        {"old": Seen(RUNNING, alive=True, tree="none"), "a": READY},
        [e(STOP, "old", "agent is no longer declared"), e(PRUNE, "old", "(state record only)"), e(SPAWN, "a")],
        spec=CAP1),
]

# --- budget ------------------------------------------------------------------------------------------------

BUDGET = [
    row("usdPerDay spent today: spawns wait", [agent("a"), agent("b")], {"a": spent(1.2), "b": READY},
        [e(WAIT, "b", "budget.usdPerDay $1.00 reached ($1.20 spent today)", then=SPAWN, condition="BudgetExhausted")],
        spec={"budget": {"usdPerDay": 1}}),
    row("usdPerDay: yesterday's spend does not count", [agent("a"), agent("b")],
        {"a": spent(1.2, YESTERDAY), "b": READY}, [e(SPAWN, "b")], spec={"budget": {"usdPerDay": 1}}),
    row("usdPerDay under budget spawns", [agent("a"), agent("b")], {"a": spent(0.4), "b": READY},
        [e(SPAWN, "b")], spec={"budget": {"usdPerDay": 1}}),
    row("perTier budget holds its tier only", [agent("a"), agent("b"), agent("c", "aid")],
        {"a": spent(0.6), "b": READY, "c": READY},
        [e(WAIT, "b", "budget.perTier.cmd $0.50 reached ($0.60 spent today)", condition="BudgetExhausted"),
         e(SPAWN, "c")],
        spec={"budget": {"perTier": {"cmd": 0.5}}}),
    row("budget holds a restart too", [agent("a")], {"a": failed(1, ledger={"r": {"usd": 2.0, "at": TODAY}})},
        [e(WAIT, "a", "resume waits: budget.usdPerDay $1.00 reached", then=RESUME, condition="BudgetExhausted")],
        spec={"budget": {"usdPerDay": 1}}),
    # issue 17: budgets as caps
    row("starts reserve their maxUsdPerRun: two fit under 1.5, the third waits", [agent("a"), agent("b"), agent("c")],
        {"a": READY, "b": READY, "c": READY},
        [e(SPAWN, "a", reserveUsd=1, capUsd=1), e(SPAWN, "b", reserveUsd=1),
         e(WAIT, "c", "budget.usdPerDay $1.50 reached ($0.00 spent today, $2.00 reserved by sessions running or "
                      "starting)", condition="BudgetExhausted")],
        spec={"budget": {"usdPerDay": 1.5}, "tiers": {**TIERS, "cmd": {"runtime": "command", "maxUsdPerRun": 1}}}),
    row("a running session's unspent reservation holds", [agent("a"), agent("b")],
        {"a": Seen(RUNNING, alive=True, rec={"reserved_usd": 1.0}), "b": READY},
        [e(WAIT, "b", "$1.00 reserved by sessions running or starting", condition="BudgetExhausted")],
        spec={"budget": {"usdPerDay": 1}}),
    row("the reservation is the median of the tier's finished runs", [agent("a"), agent("b"), agent("c")],
        {"a": spent(0.1), "b": spent(0.3), "c": READY}, [e(SPAWN, "c", reserveUsd=0.2, capUsd=0.4)],
        spec={"budget": {"usdPerDay": 5}}),
    row("else the declared estimate", [agent("a")], {"a": READY}, [e(SPAWN, "a", reserveUsd=0.5, capUsd=1)],
        spec={"budget": {"usdPerDay": 5, "estimateUsdPerRun": 0.5}}),
    row("per agent per day", [agent("a"), agent("b")], {"a": failed(1, ledger={"r": {"usd": 0.6, "at": TODAY}}),
                                                       "b": READY},
        [e(WAIT, "a", "budget.usdPerAgentPerDay $0.50 reached ($0.60 spent today)"), e(SPAWN, "b")],
        spec={"budget": {"usdPerAgentPerDay": 0.5}}),
    row("a running session over a spent budget is paused", [agent("a"), agent("b")],
        {"a": spent(1.2), "b": LIVE},
        [e(STOP, "b", "BudgetExhausted: budget.usdPerDay $1.00 reached", condition="BudgetExhausted", budget="pause")],
        spec={"budget": {"usdPerDay": 1}}),
    row("onExhausted: continue lets it run", [agent("a"), agent("b")], {"a": spent(1.2), "b": LIVE}, [],
        spec={"budget": {"usdPerDay": 1, "onExhausted": "continue"}}),
    row("onExhausted: stop", [agent("a"), agent("b")], {"a": spent(1.2), "b": LIVE},
        [e(STOP, "b", "BudgetExhausted", budget="stop")], spec={"budget": {"usdPerDay": 1, "onExhausted": "stop"}}),
    row("a paused session resumes when the budget allows", [agent("a")],
        {"a": Seen(PENDING, rec={"paused": True, "ledger": {"r": {"usd": 1.2, "at": YESTERDAY}}})},
        [e(RESUME, "a", "resume the session a budget paused")], spec={"budget": {"usdPerDay": 1}}),
    row("a paused session waits while it does not", [agent("a")],
        {"a": Seen(PENDING, rec={"paused": True, "ledger": {"r": {"usd": 1.2, "at": TODAY}}})},
        [e(WAIT, "a", "resume waits: budget.usdPerDay $1.00 reached ($1.20 spent today); resumes at 00:00 UTC",
           then=RESUME, resumesAt="2025-06-02T00:00:00+00:00")], spec={"budget": {"usdPerDay": 1}}),
    row("a fleet-capped runtime is stopped at its cap by its live spend", [agent("a", "aid")],
        {"a": Seen(RUNNING, alive=True, rec={"reserved_usd": 0.5, "cap_usd": 0.5})},
        [e(STOP, "a", "BudgetCapReached: spent $0.55 of this run's cap $0.50", condition="BudgetCapReached")],
        facts={"live": {"a": 0.55}}),
    row("live spend counts against the day", [agent("a", "aid"), agent("b")],
        {"a": Seen(RUNNING, alive=True), "b": READY},
        [e(STOP, "a", "BudgetExhausted: budget.usdPerDay $1.00 reached ($1.10 spent today)"),
         e(WAIT, "b", "budget.usdPerDay $1.00 reached ($1.10 spent today)")],
        spec={"budget": {"usdPerDay": 1}}, facts={"live": {"a": 1.1}}),
    row("a 5h window: a new one opens with the first run after the last closed", [agent("a"), agent("b")],
        {"a": spent(1.5, (NOW - timedelta(hours=2)).isoformat()), "b": READY},
        [e(WAIT, "b", "budget.windows[0] $1.00 per 5h reached ($1.50 spent in the window since 10:00); "
                      "resumes at 15:00 UTC", resumesAt="2025-06-01T15:00:00+00:00")],
        spec={"budget": {"windows": [{"every": "5h", "usd": 1}]}}),
    row("a 5h window that closed holds nothing", [agent("a"), agent("b")],
        {"a": spent(1.5, (NOW - timedelta(hours=5, minutes=1)).isoformat()), "b": READY}, [e(SPAWN, "b")],
        spec={"budget": {"windows": [{"every": "5h", "usd": 1}]}}),
    row("a tier's token window", [agent("a"), agent("b"), agent("c", "aid")],
        {"a": Seen(SUCCEEDED, rec={"ledger": {"r": {"usd": 0, "tokens": 2000,
                                                    "at": (NOW - timedelta(minutes=30)).isoformat()}}}),
         "b": READY, "c": READY},
        [e(WAIT, "b", "tiers.cmd.windows[0] 1,000 tokens per 1h reached (2,000 tokens in the window since 11:30); "
                      "resumes at 12:30 UTC"),
         e(SPAWN, "c")],
        spec={"tiers": {**TIERS, "cmd": {"runtime": "command", "windows": [{"every": "1h", "tokens": 1000}]}}}),
    # token windows count reservations as USD lines do: concurrent starts overshoot by one reservation at most
    row("starts reserve the tier's median run on a token window: three fit in 700 tokens left, the fourth waits",
        [agent("a"), agent("b"), agent("c"), agent("d"), agent("e")],
        {"a": Seen(SUCCEEDED, rec={"ledger": {"r": {"usd": 0, "tokens": 300, "at": (NOW - HALF_HOUR).isoformat()}}}),
         "b": READY, "c": READY, "d": READY, "e": READY},
        [e(SPAWN, "b", reserveTokens=300), e(SPAWN, "c"), e(SPAWN, "d"),
         e(WAIT, "e", "budget.windows[0] 1,000 tokens per 1h reached (300 tokens in the window since 11:30, 900 "
                      "reserved by sessions running or starting)", condition="BudgetExhausted")],
        spec={"budget": {"windows": [{"every": "1h", "tokens": 1000}]}}),
    row("a running session's unspent token reservation holds on the window", [agent("a"), agent("b"), agent("c")],
        {"a": Seen(SUCCEEDED, rec={"ledger": {"r": {"usd": 0, "tokens": 600, "at": (NOW - HALF_HOUR).isoformat()}}}),
         "b": Seen(RUNNING, alive=True), "c": READY},
        [e(WAIT, "c", "(700 tokens in the window since 11:30, 500 reserved by sessions running or starting)",
           condition="BudgetExhausted")],
        spec={"budget": {"windows": [{"every": "1h", "tokens": 1200}]}}, facts={"live": {"b": (0.0, 100)}}),
    row("a capped tier reserves its cap's worth of tokens at its model's input price",
        [agent("a", "aid"), agent("b", "aid"), agent("c", "aid")], {"a": READY, "b": READY, "c": READY},
        [e(SPAWN, "a", reserveUsd=0.003, reserveTokens=1000), e(SPAWN, "b"),
         e(WAIT, "c", "tiers.aid.windows[0] 1,500 tokens per 1h reached (0 tokens in the window, 2,000 reserved")],
        spec={"tiers": {**TIERS, "aid": {"runtime": "aider", "model": "claude-sonnet-4-5-20250929",
                                         "maxUsdPerRun": 0.003, "windows": [{"every": "1h", "tokens": 1500}]}}}),
]

PILOT_AGENTS = [agent("w-{item}", forEach={"items": ["a", "b", "c", "d"]}, rollout={"pilot": 1}, gates=["lint"])]
PILOTS = [
    row("only the pilot starts", PILOT_AGENTS, {},
        [e(CREATE_WORKTREE, "w-a"), e(SPAWN, "w-a"), e(WAIT, "w-b", "Pilot: waiting for pilot run(s) w-a to succeed",
                                                       condition="Pilot"), e(WAIT, "w-c"), e(WAIT, "w-d")],
        spec={"gates": GATES}),
    row("the pilot's gates not run yet: the rest still wait", PILOT_AGENTS, {"w-a": GATED},
        [e(RUN_GATE, "w-a"), e(WAIT, "w-b", "Pilot: waiting"), e(WAIT, "w-c"), e(WAIT, "w-d")],
        spec={"gates": GATES}),
    row("pilot passed, projection fits: the rest start", PILOT_AGENTS,
        {"w-a": Seen(SUCCEEDED, rec={"exit_code": 0, "cost_usd": 0.3, "ledger": {"r": {"usd": 0.3, "at": TODAY}}})},
        [e(CREATE_WORKTREE, "w-b"), e(SPAWN, "w-b"), e(CREATE_WORKTREE, "w-c"), e(SPAWN, "w-c"),
         e(CREATE_WORKTREE, "w-d"), e(SPAWN, "w-d")],
        spec={"gates": GATES, "budget": {"usdPerDay": 5}}),
    row("pilot passed, projection too big: the rest wait with it", PILOT_AGENTS,
        {"w-a": Seen(SUCCEEDED, rec={"exit_code": 0, "cost_usd": 0.3, "ledger": {"r": {"usd": 0.3, "at": TODAY}}})},
        [e(WAIT, w, "Pilot: projected $1.20 for 4 agents ($0.90 for the 3 not started); budget left $0.70; "
                    "`fleet promote w-{item}` starts them anyway", condition="Pilot") for w in ("w-b", "w-c", "w-d")],
        spec={"gates": GATES, "budget": {"usdPerDay": 1}}),
    row("promoted: the rest start anyway", PILOT_AGENTS,
        {"w-a": Seen(SUCCEEDED, rec={"exit_code": 0, "cost_usd": 0.3, "ledger": {"r": {"usd": 0.3, "at": TODAY}}})},
        [e(CREATE_WORKTREE, "w-b"), e(SPAWN, "w-b"), e(CREATE_WORKTREE, "w-c"), e(SPAWN, "w-c"),
         e(CREATE_WORKTREE, "w-d"), e(SPAWN, "w-d")],
        spec={"gates": GATES, "budget": {"usdPerDay": 1}}, facts={"promoted": frozenset({"w-{item}"})}),
    # a pilot that failed for good: the rest say so, and what to do, instead of waiting silently
    row("pilot's gates gave up: the rest wait naming it", PILOT_AGENTS,
        {"w-a": failed(0, gates_exhausted=True, last_gate={"name": "lint", "exit_code": 1, "output": "E501"})},
        [e(WAIT, w, "Pilot: pilot run(s) of w-{item} failed for good (w-a: gate lint failed maxAttempts times); "
                    "fix and restart the pilot, change the file, or `fleet promote w-{item}` to start the rest anyway",
           condition="Pilot") for w in ("w-b", "w-c", "w-d")],
        spec={"gates": GATES}),
    row("pilot failed with restart: Never", [{**PILOT_AGENTS[0], "restart": "Never"}], {"w-a": failed(1)},
        [e(WAIT, w, "failed for good (w-a: restart: Never)", condition="Pilot") for w in ("w-b", "w-c", "w-d")],
        spec={"gates": GATES}),
    row("pilot that cannot start", PILOT_AGENTS, {"w-a": failed(127, held="StartFailed")},
        [e(WAIT, w, "failed for good (w-a: StartFailed)") for w in ("w-b", "w-c", "w-d")], spec={"gates": GATES}),
    row("pilot failed but will be restarted: the rest wait for it as before", PILOT_AGENTS,
        {"w-a": failed(1, backoff_until=SOON)},
        [e(WAIT, "w-a", "CrashLoopBackOff"), *(e(WAIT, w, "Pilot: waiting for pilot run(s) w-a to succeed")
                                               for w in ("w-b", "w-c", "w-d"))],
        spec={"gates": GATES}),
    row("pilot failed for good, promoted: the rest start", PILOT_AGENTS,
        {"w-a": failed(0, gates_exhausted=True)},
        [e(CREATE_WORKTREE, "w-b"), e(SPAWN, "w-b"), e(CREATE_WORKTREE, "w-c"), e(SPAWN, "w-c"),
         e(CREATE_WORKTREE, "w-d"), e(SPAWN, "w-d")],
        spec={"gates": GATES}, facts={"promoted": frozenset({"w-{item}"})}),
]

# --- restart policy x exit code x backoff ------------------------------------------------------------------

RESTARTS = [
    row("Never, failed: stays failed", [agent("a", restart="Never")], {"a": failed(1)}, []),
    row("Never, failed in backoff: stays failed", [agent("a", restart="Never")],
        {"a": failed(1, backoff_until=SOON)}, []),
    row("Never, succeeded: done", [agent("a", restart="Never")], {"a": DONE}, []),
    row("OnFailure, succeeded: done", [agent("a")], {"a": DONE}, []),
    row("OnFailure, failed: resumes", [agent("a")], {"a": failed(1)},
        [e(RESUME, "a", "restart: OnFailure (last run failed, exit 1)")]),
    row("OnFailure, killed (exit 137): resumes", [agent("a")], {"a": failed(137)},
        [e(RESUME, "a", "restart: OnFailure (last run failed, exit 137)")]),
    row("Always, succeeded: spawns again", [agent("a", restart="Always")], {"a": DONE},
        [e(SPAWN, "a", "restart: Always (last run succeeded)")]),
    row("Always, failed: resumes", [agent("a", restart="Always")], {"a": failed(2)},
        [e(RESUME, "a", "restart: Always (last run failed, exit 2)")]),
    row("backoff in the future: waits CrashLoopBackOff", [agent("a")], {"a": failed(1, restarts=2, backoff_until=SOON)},
        [e(WAIT, "a", "CrashLoopBackOff: 2 failure(s) in a row; next restart in 30s", then=RESUME,
           condition="CrashLoopBackOff", backoffUntil=SOON)]),
    row("backoff in the future, cannot resume: then spawn", [agent("a", "aid")],
        {"a": failed(1, backoff_until=SOON)}, [e(WAIT, "a", "CrashLoopBackOff", then=SPAWN)]),
    row("backoff over: resumes", [agent("a")], {"a": failed(1, backoff_until=PAST)},
        [e(RESUME, "a", "restart: OnFailure (last run failed, exit 1)")]),
    row("backoff over, no session id: spawns", [agent("a")], {"a": failed(1, backoff_until=PAST, session_id=None)},
        [e(SPAWN, "a", "restart: OnFailure (last run failed, exit 1)")]),
    row("backoff over, runtime cannot resume: spawns", [agent("a", "aid")], {"a": failed(1, backoff_until=PAST)},
        [e(SPAWN, "a", "restart: OnFailure")]),
    row("restart waits for a slot", [agent("a"), agent("b")], {"a": LIVE, "b": failed(1)},
        [e(WAIT, "b", "resume waits: concurrency.maxRunning=1 reached", then=RESUME)], spec=CAP1),
    row("recorded but never started: spawns", [agent("a")], {"a": Seen(PENDING)},
        [e(SPAWN, "a", "pending: not started yet")]),
    row("running, same spec: nothing", [agent("a")], {"a": LIVE}, []),
    # issue 15 items 3 and 6: a run that could not start, or whose exit is unknown, is held
    row("OnFailure, could not start: held, no restart loop", [agent("a")],
        {"a": failed(127, held="cannot start 'work': No such file or directory")}, []),
    row("Always, could not start: held", [agent("a", restart="Always")],
        {"a": failed(127, held="cannot start 'work': No such file or directory")}, []),
    row("OnFailure, exit record unreadable: held until someone looks", [agent("a")],
        {"a": failed(1, exit_code=None, held="exit status unknown: exit record unreadable")}, []),
    row("held, but the spec changed: spawns the new spec", [agent("a")],
        {"a": Seen(FAILED, drift=True, rec={"exit_code": 127, "held": "cannot start 'work'"})},
        [e(SPAWN, "a", "spec changed: prompt")]),
]

# --- gates (and issue 15 item 2: an ended session waiting for its gates holds no slot) --------------------

GATE_ROWS = [
    row("gates pending: run them, may resume", [agent("a", gates=["lint"])], {"a": GATED},
        [e(RUN_GATE, "a", "session exited 0; run gates lint", gates=["lint"], resume=True)], spec={"gates": GATES}),
    row("gates pending, runtime cannot resume", [agent("a", "aid", gates=["lint"])], {"a": GATED},
        [e(RUN_GATE, "a", resume=False)], spec={"gates": GATES}),
    row("gate failed with feedback: resumes", [agent("a", gates=["lint"])], {"a": GATE_FAILED},
        [e(RESUME, "a", "feed the failed gate's output back to the session")], spec={"gates": GATES}),
    row("gate failed with feedback, cannot resume: nothing", [agent("a", "aid", gates=["lint"])],
        {"a": GATE_FAILED}, [], spec={"gates": GATES}),
    row("gate feedback waits for a slot", [agent("b"), agent("a", gates=["lint"])], {"b": LIVE, "a": GATE_FAILED},
        [e(WAIT, "a", "resume waits: concurrency.maxRunning=1 reached", then=RESUME)], spec={"gates": GATES, **CAP1}),
    row("gates exhausted: nothing, whatever the restart policy", [agent("a", gates=["lint"])],
        {"a": failed(0, gates_exhausted=True)}, [], spec={"gates": GATES}),
    row("gates exhausted under Always: nothing", [agent("a", gates=["lint"], restart="Always")],
        {"a": failed(0, gates_exhausted=True)}, [], spec={"gates": GATES}),
    row("gated session holds no slot: the next agent spawns in the same pass",
        [agent("a1", gates=["lint"]), agent("a2")], {"a1": GATED, "a2": READY},
        [e(RUN_GATE, "a1", resume=False), e(SPAWN, "a2", "worktree exists, session not started yet")],
        spec={"gates": GATES, **CAP1}),
    row("gated session, new agent without worktree spawns in the same pass",
        [agent("a1", gates=["lint"]), agent("a2")], {"a1": GATED},
        [e(RUN_GATE, "a1", resume=False), e(CREATE_WORKTREE, "a2"), e(SPAWN, "a2", "new agent")],
        spec={"gates": GATES, **CAP1}),
    row("gated session resumes at once with a slot left over", [agent("a1", gates=["lint"]), agent("a2")],
        {"a1": GATED, "a2": READY}, [e(RUN_GATE, "a1", resume=True), e(SPAWN, "a2")],
        spec={"gates": GATES, "concurrency": {"maxRunning": 2}}),
    row("gated session alone under the cap may resume", [agent("a1", gates=["lint"]), agent("a2")],
        {"a1": GATED, "a2": DONE}, [e(RUN_GATE, "a1", resume=True)], spec={"gates": GATES, **CAP1}),
    row("gated session with the cap full of running sessions: no resume now",
        [agent("a1", gates=["lint"]), agent("a2")], {"a1": GATED, "a2": LIVE},
        [e(RUN_GATE, "a1", resume=False)], spec={"gates": GATES, **CAP1}),
    row("gated session, another tier's spawn leaves its tier slot", [agent("a1", gates=["lint"]), agent("a2", "aid")],
        {"a1": GATED, "a2": READY}, [e(RUN_GATE, "a1", resume=True), e(SPAWN, "a2")],
        spec={"gates": GATES, "tiers": {"cmd": {"runtime": "command", "maxRunning": 1}, "aid": {"runtime": "aider"}}}),
    row("gated session over budget: gates run, no resume now", [agent("a1", gates=["lint"])],
        {"a1": Seen(PENDING, rec={"exit_code": 0, "gates_pending": True, "ledger": {"r": {"usd": 3.0, "at": TODAY}}})},
        [e(RUN_GATE, "a1", resume=False)], spec={"gates": GATES, "budget": {"usdPerDay": 1}}),
]

# --- drift / replace ---------------------------------------------------------------------------------------

DRIFT = [
    row("spec changed while running: replace", [agent("a")], {"a": Seen(RUNNING, alive=True, drift=True)},
        [e(REPLACE, "a", "spec changed: prompt: 'old prompt' -> ''", changes=["prompt: 'old prompt' -> ''"],
           **{"from": "0ld5pec0ld5p"})]),
    row("spec changed while running, protect: blocked", [agent("a", protect=True)],
        {"a": Seen(RUNNING, alive=True, drift=True)},
        [e(BLOCKED, "a", "spec changed but protect: true; not replacing the running session")]),
    row("spec changed after it ended: spawn", [agent("a")], {"a": Seen(SUCCEEDED, drift=True)},
        [e(SPAWN, "a", "spec changed: prompt: 'old prompt' -> ''", changes=["prompt: 'old prompt' -> ''"])]),
    row("spec changed after it failed under Never: spawn", [agent("a", restart="Never")],
        {"a": Seen(FAILED, drift=True, rec={"exit_code": 1})}, [e(SPAWN, "a", "spec changed")]),
    row("spec changed after it ended, cap full: waits", [agent("b"), agent("a")],
        {"b": LIVE, "a": Seen(SUCCEEDED, drift=True)},
        [e(WAIT, "a", "spawn waits: concurrency.maxRunning=1 reached", then=SPAWN,
           changes=["prompt: 'old prompt' -> ''"])], spec=CAP1),
]

# --- protect -----------------------------------------------------------------------------------------------

PROTECT = [
    row("protected and running: left alone", [agent("a", protect=True)], {"a": LIVE}, []),
    row("undeclared protected running session: blocked", [],
        {"old": Seen(RUNNING, alive=True, rec={"protect": True})},
        [e(BLOCKED, "old", "agent is no longer declared but protect: true; fleet will not stop or prune it")]),
    row("undeclared protected with a worktree: blocked", [], {"old": Seen(SUCCEEDED, rec={"protect": True})},
        [e(BLOCKED, "old", "protect: true; fleet will not stop or prune it")]),
    row("undeclared protected with only a record left: the record is pruned", [],
        {"old": Seen(SUCCEEDED, tree="none", rec={"protect": True})}, [e(PRUNE, "old", "(state record only)")]),
    row("orphan of a protected agent: blocked", [agent("a", protect=True, restart="Never")], {"a": DONE},
        [e(BLOCKED, "a", "unrecorded session pid 777 of a protected agent; fleet will not stop it", pid=777)],
        facts={"orphans": [OwnedProcess(777, 1.0, "a", "h", "s", "agent --work")]}),
    # every record lost: protect survives in the worktree's marker and the branch config
    row("undeclared, no record, protect kept in its marker: blocked", [], {"old": Seen(kept={"marker": True})},
        [e(BLOCKED, "old", "agent is no longer declared but protect: true; fleet will not stop or prune it")]),
    row("undeclared, no record, protect kept in the branch config: blocked", [],
        {"old": Seen(kept={"marker": False, "branch": True})}, [e(BLOCKED, "old", "protect: true")]),
    row("undeclared, no record, nothing kept says protect: pruned", [],
        {"old": Seen(kept={"marker": False, "branch": False})}, [e(PRUNE, "old", "nothing unsaved or unmerged")]),
    row("orphan of an undeclared agent whose protect is kept: blocked, not stopped", [],
        {"old": Seen(kept={"marker": True})},
        [e(BLOCKED, "old", "unrecorded session pid 778 of a protected agent; fleet will not stop it", pid=778),
         e(BLOCKED, "old", "no longer declared but protect: true")],
        facts={"orphans": [OwnedProcess(778, 1.0, "old", "h", "s", "agent --work")]}),
    row("declared without protect, kept protect says true: the file wins", [agent("a")],
        {"a": Seen(RUNNING, alive=True, drift=True, kept={"marker": True})}, [e(REPLACE, "a", "spec changed")]),
]

# --- prunes ------------------------------------------------------------------------------------------------

PRUNES = [
    row("undeclared, nothing at stake: prune", [], {"old": Seen(SUCCEEDED, stake=stake())},
        [e(PRUNE, "old", "agent is no longer declared; nothing unsaved or unmerged", worktree=str(WT / "old"),
           branch="fleet/t/old")]),
    row("undeclared, its tree switched to a user's branch: prune the tree and its own branch, keep that one", [],
        {"old": Seen(SUCCEEDED, stake=stake(), checked_out="user-topic")},
        [e(PRUNE, "old", "nothing unsaved or unmerged", worktree=str(WT / "old"), branch="fleet/t/old",
           keptBranch="user-topic")]),
    row("undeclared, tree on a user's branch and its own branch gone: no branch is deleted", [],
        {"old": Seen(SUCCEEDED, stake=stake(), checked_out="user-topic", own_gone=True)},
        [e(PRUNE, "old", "nothing unsaved or unmerged", branch=None, keptBranch="user-topic")]),
    row("undeclared, record only: prune the record", [], {"old": Seen(FAILED, tree="none")},
        [e(PRUNE, "old", "agent is no longer declared (state record only)")]),
    row("undeclared branch without worktree, merged: prune", [],
        {"old": Seen(tree="none", branch="fleet/t/old", stake=stake())},
        [e(PRUNE, "old", "nothing unsaved or unmerged", worktree=None, branch="fleet/t/old")]),
    row("undeclared and running: stop, then prune", [], {"old": Seen(RUNNING, alive=True, stake=stake())},
        [e(STOP, "old", "agent is no longer declared", pid=4000), e(PRUNE, "old", "nothing unsaved or unmerged")]),
    row("undeclared with unmerged commits: blocked with the archive hint", [],
        {"old": Seen(SUCCEEDED, stake=stake(commits=["abc1234 wip"]))},
        [e(BLOCKED, "old", "prune refused: 1 unmerged commit(s) (--archive saves it under refs/fleet/archive/ first)",
           commits=["abc1234 wip"])]),
    row("undeclared with uncommitted files, --archive: prune with archive", [],
        {"old": Seen(SUCCEEDED, stake=stake(dirty=["notes.txt"]))},
        [e(PRUNE, "old", "archiving first: 1 uncommitted file(s)", archive=True, files=["notes.txt"])], archive=True),
    row("undeclared, --archive but a process runs in it: blocked", [],
        {"old": Seen(SUCCEEDED, stake=stake(processes=["99 sleep 60"]))},
        [e(BLOCKED, "old", "prune refused: 1 process(es) running in it", processes=["99 sleep 60"])], archive=True),
    row("undeclared, locked worktree: blocked without the archive hint", [],
        {"old": Seen(SUCCEEDED, stake=stake(locked=True))}, [e(BLOCKED, "old", "prune refused: worktree is locked")]),
    row("undeclared, its removal interrupted, what is left was checked: finish the prune", [],
        {"old": Seen(SUCCEEDED, tree="pruning", stake=stake())},
        [e(PRUNE, "old", "no longer declared; finishing a prune that was interrupted; nothing unsaved or unmerged",
           worktree=str(WT / "old"))]),
    row("undeclared, its removal interrupted, a file new since: blocked", [],
        {"old": Seen(SUCCEEDED, tree="pruning", stake=stake(dirty=["late.txt"]))},
        [e(BLOCKED, "old", "prune refused: 1 uncommitted file(s)", files=["late.txt"])]),
    row("declared, its deletion interrupted: finish it, then create and start it afresh", [agent("a")],
        {"a": Seen(SUCCEEDED, tree="pruning", stake=stake())},
        [e(PRUNE, "a", "deleted by request; finishing a prune that was interrupted"),
         e(CREATE_WORKTREE, "a", "re-creating it once its interrupted deletion is finished", path=str(WT / "a")),
         e(SPAWN, "a", "new agent")]),
    row("declared, its deletion interrupted, a file new since: blocked, nothing started", [agent("a")],
        {"a": Seen(SUCCEEDED, tree="pruning", stake=stake(dirty=["late.txt"]))},
        [e(BLOCKED, "a", "prune refused: 1 uncommitted file(s)")]),
    row("gc.prune false: an undeclared session is stopped, nothing pruned", [],
        {"old": Seen(RUNNING, alive=True, stake=stake()), "older": Seen(SUCCEEDED, stake=stake())},
        [e(STOP, "old")], spec={"gc": {"prune": False}}),
    row("undeclared agents outside --target: untouched", [agent("a")],
        {"a": READY, "old": Seen(SUCCEEDED, stake=stake())}, [e(SPAWN, "a")], targets=("a",)),
]

# --- worktree blocks and repairs ---------------------------------------------------------------------------

WORKTREES = [
    row("base missing: blocked", [agent("a")], {},
        [e(BLOCKED, "a", "base ref 'main' does not exist in the repo")], facts={"base_exists": False}),
    row("branch checked out elsewhere: blocked", [agent("a")], {},
        [e(BLOCKED, "a", "branch fleet/t/a is checked out at /elsewhere; fleet will not force it")],
        facts={"checked_out": {"fleet/t/a": Path("/elsewhere")}}),
    row("path is a foreign worktree: blocked", [agent("a")], {},
        [e(BLOCKED, "a", f"{WT / 'a'} is a worktree this fleet does not own")],
        facts={"foreign": [Worktree(WT / "a", head="f00", branch="topic")]}),
    row("path is a file: blocked", [agent("a")], {},
        [e(BLOCKED, "a", f"{WT / 'a'} is a worktree this fleet does not own")],
        facts={"paths": {WT / "a": PATH_NOT_A_DIR}}),
    row("path is a non-empty directory: blocked", [agent("a")], {},
        [e(BLOCKED, "a", f"{WT / 'a'} exists and is not empty; move it away")],
        facts={"paths": {WT / "a": PATH_NON_EMPTY_DIR}}),
    row("path is an empty directory: created there", [agent("a")], {},
        [e(CREATE_WORKTREE, "a", "no worktree; branch fleet/t/a from main"), e(SPAWN, "a")],
        facts={"paths": {WT / "a": PATH_EMPTY_DIR}}),
    row("branch exists, not the fleet's: blocked", [agent("a")], {},
        [e(BLOCKED, "a", "branch fleet/t/a exists and is not owned by this fleet; rename the agent or the branch")],
        facts={"branches": frozenset({"main", "fleet/t/a"})}),
    row("branch exists and is the fleet's: re-used", [agent("a")], {},
        [e(CREATE_WORKTREE, "a", "no worktree; re-using this fleet's branch fleet/t/a", branch="fleet/t/a"),
         e(SPAWN, "a", "new agent")],
        facts={"branches": frozenset({"main", "fleet/t/a"}), "owned_branches": {"fleet/t/a"}}),
    row("interrupted creation: finished", [agent("a")],
        {"a": Seen(PENDING, tree="unmarked", rec={"spec_hash": None, "reason": "creating worktree"})},
        [e(CREATE_WORKTREE, "a", "finishing a worktree creation that was interrupted", repair="interrupted"),
         e(SPAWN, "a", "worktree exists, session not started yet")]),
    row("worktree directory deleted: re-created, the finished run stays done", [agent("a")],
        {"a": Seen(SUCCEEDED, tree="deleted", rec={"exit_code": 0})},
        [e(CREATE_WORKTREE, "a", f"worktree directory {WT / 'a'} was deleted; re-creating it on fleet/t/a",
           repair="missing")]),
    row("foreign worktree elsewhere under the root: a note, no action", [agent("a")], {"a": DONE}, [],
        facts={"foreign": [Worktree(WT / "mine", head="f00", branch="topic")]}),
]

# --- orphans -----------------------------------------------------------------------------------------------

ORPHANS = [
    row("orphan of an undeclared agent: stopped", [], {},
        [e(STOP, "gone", "orphan: belongs to undeclared agent gone", pid=555, cmdline="agent --work")],
        facts={"orphans": [OwnedProcess(555, 1.0, "gone", "h", "s", "agent --work")]}),
    row("orphan of a declared agent: stopped, then the agent spawns", [agent("a")], {"a": READY},
        [e(STOP, "a", "orphan: running session the state store does not know", pid=556), e(SPAWN, "a")],
        facts={"orphans": [OwnedProcess(556, 1.0, "a", "h", "s", "agent --work")]}),
    row("orphan outside --target: untouched", [agent("a")], {"a": DONE}, [],
        facts={"orphans": [OwnedProcess(557, 1.0, "gone", "h", "s", "x")]}, targets=("a",)),
]

# --- timeout and stallAfter --------------------------------------------------------------------------------

DEADLINES = [
    row("past its timeout: stopped", [agent("a", timeout="10m")], {"a": Seen(RUNNING, alive=True, started_ago=660)},
        [e(STOP, "a", "DeadlineExceeded: ran 660s, timeout is 600s", condition="DeadlineExceeded", pid=4000)]),
    row("within its timeout: left running", [agent("a", timeout="10m")],
        {"a": Seen(RUNNING, alive=True, started_ago=300)}, []),
    row("past its timeout, protect: blocked", [agent("a", timeout="10m", protect=True)],
        {"a": Seen(RUNNING, alive=True, started_ago=660)},
        [e(BLOCKED, "a", "DeadlineExceeded: ran 660s, timeout is 600s; protect: true, so fleet will not stop it")]),
    row("silent past stallAfter: stopped", [agent("a", stallAfter="5m")],
        {"a": Seen(RUNNING, alive=True, progress_ago=360)},
        [e(STOP, "a", "Stalled: no progress for 360s", condition="Stalled")]),
    row("silent past the default stallAfter (15m): stopped", [agent("a")],
        {"a": Seen(RUNNING, alive=True, progress_ago=1000)},
        [e(STOP, "a", "stallAfter is 900s", condition="Stalled")]),
    row("silent past stallAfter, protect: blocked", [agent("a", stallAfter="5m", protect=True)],
        {"a": Seen(RUNNING, alive=True, progress_ago=360)},
        [e(BLOCKED, "a", "Stalled: no progress for 360s")]),
    row("showing progress: left running", [agent("a", stallAfter="5m")],
        {"a": Seen(RUNNING, alive=True, progress_ago=60)}, []),
    row("a stopped hung session's slot goes to a waiting agent", [agent("a", timeout="10m"), agent("b")],
        {"a": Seen(RUNNING, alive=True, started_ago=660), "b": READY},
        [e(STOP, "a", "DeadlineExceeded"), e(SPAWN, "b")], spec=CAP1),
    row("past its timeout but the spec changed: replaced, not stopped", [agent("a", timeout="10m")],
        {"a": Seen(RUNNING, alive=True, started_ago=660, drift=True)}, [e(REPLACE, "a", "spec changed")]),
]


@pytest.mark.parametrize("r", CAPS + BUDGET + PILOTS + RESTARTS + GATE_ROWS + DRIFT + PROTECT + PRUNES + WORKTREES
                         + ORPHANS + DEADLINES)
def test_plan(r: Row) -> None:
    check(run(r), r.expected)


def test_a_pilot_failed_for_good_is_in_the_plans_notes_and_projections() -> None:
    from reconciler.render.spend import projection_line

    loaded = load(PILOT_AGENTS, {"gates": GATES})
    result = plan(loaded, observe(loaded, {"w-a": failed(0, gates_exhausted=True)}), NOW)
    assert result.notes == ("rollout w-{item}: pilot run(s) of w-{item} failed for good (w-a: its gates failed "
                            "maxAttempts times); fix and restart the pilot, change the file, or `fleet promote "
                            "w-{item}` to start the rest anyway",)
    (proj,) = result.projections
    assert proj["failedPilots"] == ["w-a"] and proj["projectedUsd"] is None
    assert projection_line(proj) == ("rollout w-{item}: pilot w-a failed for good; fix and restart it, change the "
                                     "file, or `fleet promote FILE 'w-{item}'`")


def test_foreign_unmarked_worktree_is_a_note() -> None:
    loaded = load([agent("a")], {})
    foreign = [Worktree(WT / "mine", head="f00", branch="topic"),
               Worktree(WT / "theirs", head="f00", branch=None, owner=Owner("other", REPO_ID, "x", "b"))]
    result = plan(loaded, observe(loaded, {"a": DONE}, foreign=foreign), NOW)
    assert result.notes == (f"foreign worktree {WT / 'mine'} (branch topic) is not owned by fleet t; left alone",)


# --- plan_delete -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeleteRow:
    agents: list[dict[str, Any]]
    seen: Mapping[str, Seen]
    names: tuple[str, ...] | None
    expected: list[E]
    facts: Mapping[str, Any] = field(default_factory=dict)
    archive: bool = False


DELETES = [
    pytest.param(DeleteRow([agent("a"), agent("b", protect=True)],
                           {"a": Seen(SUCCEEDED, stake=stake()), "b": Seen(SUCCEEDED, stake=stake())}, None,
                           [e(STOP, "gone", "orphan session of this fleet", pid=555),
                            e(PRUNE, "a", "deleted by request; nothing unsaved or unmerged"),
                            e(BLOCKED, "b", "protect: true; fleet will not stop or prune it")],
                           facts={"orphans": [OwnedProcess(555, 1.0, "gone", "h", "s", "x")]}),
                 id="everything: orphans first, protect holds"),
    pytest.param(DeleteRow([agent("a")], {"a": Seen(RUNNING, alive=True, stake=stake(commits=["abc1234 wip"]))},
                           ("a",), [e(STOP, "a", "deleted by request"),
                                    e(BLOCKED, "a", "prune refused: 1 unmerged commit(s) (--archive saves it")],
                           facts={"orphans": [OwnedProcess(555, 1.0, "gone", "h", "s", "x")]}),
                 id="named: running with work at stake, stopped then refused; orphans left alone"),
    pytest.param(DeleteRow([agent("a")], {"a": Seen(SUCCEEDED, stake=stake(dirty=["x.txt"]))}, ("a",),
                           [e(PRUNE, "a", "deleted by request; archiving first: 1 uncommitted file(s)", archive=True)],
                           archive=True), id="named with --archive: archived"),
    pytest.param(DeleteRow([], {"old": Seen(FAILED, tree="none")}, ("old",),
                           [e(PRUNE, "old", "deleted by request (state record only)")]), id="undeclared record only"),
    pytest.param(DeleteRow([agent("a")], {}, ("a",), []), id="nothing observed: nothing to do"),
]


@pytest.mark.parametrize("r", DELETES)
def test_plan_delete(r: DeleteRow) -> None:
    loaded = load(r.agents, {})
    observed = observe(loaded, r.seen, **r.facts)
    check(plan_delete(loaded, observed, r.names, archive=r.archive), r.expected)


# --- the contract: pure, and only what it is given ---------------------------------------------------------

def test_plan_needs_an_aware_utc_now() -> None:
    loaded = load([agent("a")], {})
    with pytest.raises(ValueError, match="aware UTC"):
        plan(loaded, observe(loaded, {}), datetime(2025, 6, 1, 12, 0))


def test_plan_reads_the_clock_it_is_given() -> None:
    """The same backoff deadline waits one second before it and resumes one second after."""
    loaded = load([agent("a")], {})
    until = NOW + timedelta(seconds=1)
    observed = observe(loaded, {"a": failed(1, backoff_until=until.isoformat())})
    assert [a.kind for a in plan(loaded, observed, NOW).actions] == [WAIT]
    assert [a.kind for a in plan(loaded, observed, until + timedelta(seconds=1)).actions] == [RESUME]


def test_plan_leaves_the_observed_state_as_it_was() -> None:
    loaded = load([agent("a1", gates=["lint"]), agent("a2"), agent("a3")], {"gates": GATES, **CAP1})
    observed = observe(loaded, {"a1": GATED, "a2": READY})
    before = repr(observed)
    first = plan(loaded, observed, NOW)
    assert repr(observed) == before and plan(loaded, observed, NOW) == first


# --- worktrees found where they are ------------------------------------------------------------------------

def test_worktrees_away_from_the_root_are_used_where_they_are_and_the_plan_says_so() -> None:
    loaded = load([agent("a"), agent("b"), agent("c")], {"worktrees": {"root": "moved"}})
    observed = observe(loaded, {"a": LIVE, "b": DONE})  # their trees are under the old root
    result = plan(loaded, observed, NOW)
    check(result, [e(CREATE_WORKTREE, "c", "no worktree"), e(SPAWN, "c")])
    assert next(a for a in result.actions if a.kind == CREATE_WORKTREE).details["path"] == str(REPO / "moved" / "c")
    assert result.notes == (f"worktrees.root is {REPO / 'moved'}: it applies to new worktrees only; the existing "
                            "worktree(s) of a, b stay where they are",)


def test_no_note_when_every_worktree_is_under_the_root() -> None:
    loaded = load([agent("a")], {})
    assert plan(loaded, observe(loaded, {"a": LIVE}), NOW).notes == ()
