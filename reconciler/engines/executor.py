"""Execute a plan on any engine: each action in order, recording intent before acting.

The record lifecycle lives here and in act/lifecycle.py, once for every engine; the
engine (engines/base.py) only does the world-touching step of each action. Every step
writes the agent's record before and after touching the world, so a `kill -9` at any
point leaves a state the next pass converges from (the orphan and adoption rules of
observation cover a session started but not yet recorded).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .. import telemetry
from ..act import lifecycle
from ..act.costs import conversation_reported
from ..act.failpoints import failpoint
from ..act.gates import record_gates
from ..act.worktrees import AddFailed
from ..errors import EXIT_BLOCKED, FleetError
from ..observe.progress import last_api_error, last_lines, read_transcript
from ..observe.snapshot import Observed, ObservedAgent
from ..plan.actions import (
    BLOCKED,
    CREATE_WORKTREE,
    DELIVER,
    MERGE,
    PRUNE,
    PUSH,
    REPLACE,
    RESUME,
    RUN_GATE,
    SPAWN,
    STOP,
    WAIT,
    Action,
    Plan,
)
from ..runtimes.pricing import overrides
from ..runtimes.usage import claude_restored_total
from ..spec.desired import DesiredAgent
from ..spec.loader import LoadedFleet
from ..store.records import BLOCKED as PHASE_BLOCKED
from ..store.records import (
    CREATING_WORKTREE,
    DELIVERED,
    FAILED,
    PENDING,
    PRUNING,
    RUNNING,
    STARTING_SESSION,
    SUCCEEDED,
    SessionRecord,
    now_iso,
)
from .base import WorkspaceLost

if TYPE_CHECKING:
    from ..store.records import StateStore
    from .base import Engine

RESUME_MESSAGE = ("Your previous run {ended}. Continue the task from where you stopped, then commit your "
                  "work.")


class _Recorded(FleetError):
    """An action failed and the agent's record already says why (e.g. StartFailed)."""


@dataclass
class Outcome:
    action: Action
    ok: bool
    message: str = ""
    blocked: bool = False  # refused at the last moment to protect work (exit 3)
    # a run-gate whose gate failed (fed back, or given up): the action ran, the work did not pass;
    # shown and counted as a gate failure, not a failed action (docs/output.md "Exit codes")
    gate_failed: bool = False
    hint: str = ""  # what to do about a failed or blocked action (the FleetError's hint), printed under it


@dataclass
class Executor:
    loaded: LoadedFleet
    engine: Engine
    observed: Observed
    grace: float = 10.0
    on_step: Callable[[Outcome], None] | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    _gate_failed: bool = field(default=False, init=False)  # set by _run_gate for the action in hand
    _queue: Any = field(default=None, init=False)  # engines/queue.py Queue, made by the first queue step

    @property
    def store(self) -> StateStore:
        return self.engine.store

    def run(self, plan: Plan) -> list[Outcome]:
        self.engine.before_actions()
        failed: dict[str, str] = {}  # agent -> the kind of its action that failed or was refused this pass
        for action in plan.actions:
            self._gate_failed = False
            if action.agent and action.agent in failed:
                # the agent's later steps build on the earlier one (a spawn in the tree its failed
                # create left): none runs; the next pass plans again from what is there
                outcome = Outcome(action, False, f"not run: {failed[action.agent]} failed before it this pass")
                self.outcomes.append(outcome)
                if self.on_step:
                    self.on_step(outcome)
                continue
            try:
                message = self._do(action)
                outcome = Outcome(action, True, message, gate_failed=self._gate_failed)
            except FleetError as exc:
                outcome = Outcome(action, False, exc.message, blocked=exc.exit_code == EXIT_BLOCKED,
                                  hint=exc.hint or "")
                if not outcome.blocked and not isinstance(exc, _Recorded):
                    self._fail(action, exc.message)
            except Exception as exc:  # noqa: BLE001 - any error of one action is that action's failure:
                # the rest of the plan still runs (an OSError, or a bug, must not strand every other agent)
                outcome = Outcome(action, False, f"{type(exc).__name__}: {exc}")
                try:
                    self._fail(action, outcome.message)
                except Exception as also:  # noqa: BLE001 - e.g. the state dir itself is what failed
                    outcome.message += f" (and its record could not be saved: {also})"
            if not outcome.ok and action.agent:
                failed[action.agent] = action.kind
            self.outcomes.append(outcome)
            if self.on_step:
                self.on_step(outcome)
        return self.outcomes

    @telemetry.traced_action
    def _do(self, action: Action) -> str:
        agent = self.loaded.agent(action.agent)
        obs = self.observed.agents.get(action.agent)
        if agent is not None and obs is not None and obs.worktree is not None and obs.worktree.path != agent.worktree:
            # an existing worktree is used where it is (found by its marker): a changed
            # worktrees.root, or a fleet file read elsewhere, applies to new worktrees only
            agent = replace(agent, worktree=obs.worktree.path)
        handler = {CREATE_WORKTREE: self._create, SPAWN: self._spawn, RESUME: self._resume,
                   REPLACE: self._replace, STOP: self._stop, PRUNE: self._prune, WAIT: self._wait,
                   RUN_GATE: self._run_gate, BLOCKED: self._blocked,
                   MERGE: self._queue_step, DELIVER: self._queue_step, PUSH: self._queue_step}[action.kind]
        return handler(action, agent, obs)

    def _queue_step(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        """The merge queue's steps (engines/queue.py), one Queue per plan (its scratch tree is reused)."""
        from .queue import Queue

        if self._queue is None:
            self._queue = Queue(self.loaded, self.engine)
        return {MERGE: self._queue.merge, DELIVER: self._queue.deliver, PUSH: self._queue.push}[action.kind](action)

    def _create(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        assert agent is not None
        rec = self._record(agent)
        rec.reason = CREATING_WORKTREE  # intent: proves ownership if we die half-way through the creation
        self.store.save(rec)
        try:
            message = self.engine.create_workspace(action, agent)
        except AddFailed as exc:
            # git ran and may have made the tree: the intent stays beside the failure, so the next
            # pass knows the tree for fleet's and finishes or repairs it (act/worktrees.py AddFailed)
            rec.phase = FAILED
            rec.set_condition("Ready", "False", "ActionFailed", f"{action.kind} failed: {exc.message}")
            self.store.save(rec)
            raise _Recorded(exc.message, hint=exc.hint) from None
        rec.reason = None
        self.store.save(rec)
        return message

    def _spawn(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None,
               *, resume: tuple[str, str] | None = None, prepared: object | None = None) -> str:
        assert agent is not None
        reserve, cap = action.details.get("reserveUsd"), action.details.get("capUsd")
        reserved = float(reserve) if isinstance(reserve, (int, float)) else None
        if isinstance(cap, (int, float)) and prepared is None:
            # the session's hard cap (claude: on top of what its conversation already reported,
            # as its running total is what the CLI compares)
            agent = replace(agent, max_budget_usd=round(cap + self._conversation_so_far(agent, resume), 6))
        prepared = prepared or self.engine.prepare(agent, resume)
        rec = self._record(agent)
        rec.reason = STARTING_SESSION  # intent, recorded before the session exists
        self.store.save(rec)
        failpoint("spawn:before-launch")
        at = now_iso()  # before the launch: a program that cannot start has ended when it returns
        launched = self.engine.launch(agent, prepared, self.observed)
        failpoint("spawn:after-launch")
        lifecycle.started(rec, agent, session_id=launched.session_id, pid=launched.pid,
                          create_time=launched.create_time, ready=launched.ready, started_at=at,
                          reserved_usd=reserved, cap_usd=float(cap) if isinstance(cap, (int, float)) else None)
        if launched.cannot_start is not None:  # a configuration error: the action failed, no restart loop
            lifecycle.could_not_start(rec, launched.cannot_start)
            self.store.save(rec)
            raise _Recorded(launched.cannot_start.message)
        self.store.save(rec)
        return launched.where

    def _resume(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        assert agent is not None
        rec = self._record(agent)
        code = obs.exit_code if obs else None
        ended = f"ended with exit code {code}" if code is not None else f"was stopped ({rec.reason or 'lost'})"
        # an operator's message (the dashboard's "resume with a message") comes first
        message = action.details.get("message") or rec.gate_feedback or RESUME_MESSAGE.format(ended=ended)
        return self._spawn(action, agent, obs, resume=(rec.session_id or "", message))

    def _replace(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        assert agent is not None
        prepared = self.engine.prepare(agent, None)  # a spec that cannot start must not cost the running session
        self._stop(action, agent, obs)
        return self._spawn(action, agent, obs, prepared=prepared)

    def _stop(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        if "cmdline" in action.details:  # an orphan: no record, its pid and create-time were observed
            return self.engine.stop_orphan(action, self.observed, grace=self.grace)
        rec = obs.record if obs else None
        if rec is None:
            return "not running"
        halted = self.engine.halt(action, rec, self.observed, grace=self.grace)
        if halted is None:
            return "not running"
        failpoint("stop:after-stop")
        self.store.clear_exit(rec.agent)
        budget = action.details.get("budget")  # stopped by a budget: not a failure
        condition = None if budget else action.details.get("condition")
        rec.finished_at = now_iso()
        lifecycle.fold_stopped_run(rec, halted.log_tail, transcript=read_transcript(rec),
                                   prices=overrides(self.loaded.fleet.spec.budget.prices))
        lifecycle.stopped(rec, reason=action.reason, condition=condition, tail=last_lines(halted.log_tail),
                          api_error=last_api_error(rec) if condition else None,
                          policy=self.loaded.fleet.spec.restartBackoff, pause=budget == "pause")
        if action.details.get("hold"):  # an operator stopped it: not restarted until they say so
            lifecycle.held_by_operator(rec, action.details["hold"])
        self.store.save(rec)
        return halted.message

    def _conversation_so_far(self, agent: DesiredAgent, resume: tuple[str, str] | None) -> float:
        """The total a resumed claude conversation starts from (its CLI compares the cap with it):
        its transcript's last cost-state, else what its earlier results reported."""
        if resume is None or agent.tier.runtime != "claude":
            return 0.0
        rec = self.store.load(agent.name)
        if rec is None:
            return 0.0
        restored = claude_restored_total(read_transcript(rec))
        return restored if restored is not None else conversation_reported(rec, resume[0])

    def _prune(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        assert obs is not None
        if obs.record is not None:
            obs.record.reason = PRUNING
            self.store.save(obs.record)
        message = self.engine.prune(action, obs, self.observed)
        self.store.remove(action.agent)
        return message

    def _wait(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        if agent is None:
            return action.reason
        rec = self._record(agent)
        if rec.phase == RUNNING:
            return action.reason
        if rec.phase not in (FAILED, SUCCEEDED, DELIVERED):
            rec.phase, rec.reason = PENDING, action.reason
        # a finished run keeps its phase, its backoff and why it ended; the wait is a condition
        condition = action.details.get("condition")
        if condition:
            rec.set_condition(condition, "True", condition, action.reason)
        rec.set_condition("Ready", "False", "Waiting", action.reason)
        self.store.save(rec)
        return action.reason

    def _run_gate(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        """Run the agent's gates where its work is; the reconciler's result, never the agent's word."""
        assert agent is not None
        rec = self._record(agent)
        runner = self.engine.gate_runner(agent, self.observed)
        if isinstance(runner, WorkspaceLost):
            lifecycle.workspace_lost(rec, reason=runner.reason, condition=runner.condition,
                                     policy=self.loaded.fleet.spec.restartBackoff)
            self.store.save(rec)
            return rec.reason or runner.reason
        verdict = record_gates(rec, agent, runner.run)
        self.store.save(rec)
        self._gate_failed = not verdict.passed
        if verdict.feed_back and action.details.get("resume"):
            return f"{verdict.message}; resuming: " + self._resume(action, agent, obs)
        return verdict.message + runner.where

    def _blocked(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        rec = obs.record if obs and obs.record else (self._record(agent) if agent else None)
        if rec is None:
            return action.reason
        if rec.phase in (None, PENDING, PHASE_BLOCKED):
            rec.phase, rec.reason = PHASE_BLOCKED, action.reason
            rec.set_condition("Ready", "False", "Blocked", action.reason)
        elif rec.phase != RUNNING:
            # a finished run keeps what it knows (phase, result, cost): a refused prune or a
            # blocked replace is news about the next step, not about the run that ended, and
            # overwriting it made a re-declared agent run its whole task again
            rec.set_condition("Blocked", "True", "Blocked", action.reason)
        else:
            return action.reason
        self.store.save(rec)
        return action.reason

    def _fail(self, action: Action, message: str) -> None:
        agent = self.loaded.agent(action.agent)
        if agent is None:
            return
        rec = self._record(agent)
        if action.kind in (MERGE, DELIVER, PUSH):
            # the queue failed, not the agent's run: its phase stays (a Failed phase would run the
            # agent again for nothing); the next pass plans the step again
            rec.set_condition("Delivered", "False", "ActionFailed", f"{action.kind} failed: {message}")
            self.store.save(rec)
            return
        if rec.phase != RUNNING:
            rec.phase, rec.reason = FAILED, f"{action.kind} failed: {message}"
            rec.set_condition("Ready", "False", "ActionFailed", rec.reason)
            self.store.save(rec)

    def _record(self, agent: DesiredAgent) -> SessionRecord:
        """The agent's current record (re-read: an earlier action may have changed it)."""
        rec = self.store.load(agent.name) or SessionRecord(agent=agent.name, fleet=self.loaded.name)
        rec.tier, rec.runtime, rec.model = agent.tier_name, agent.tier.runtime, agent.tier.model
        rec.branch, rec.worktree, rec.protect = agent.branch, self.engine.workspace_of(agent), agent.protect
        return rec
