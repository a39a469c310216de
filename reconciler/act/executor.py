"""Execute a plan: each action in order, recording intent before acting.

Every step writes the agent's record before and after touching the world, so a
`kill -9` at any point leaves a state the next apply converges from (the orphan
and adoption rules in observe cover a session started but not yet recorded).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import telemetry
from ..errors import EXIT_BLOCKED, FleetError
from ..locking.slots import write_lock_table
from ..observe.progress import last_api_error, last_lines
from .lifecycle import back_off, read_log_tail
from ..observe.snapshot import Observed, ObservedAgent
from ..plan.actions import (BLOCKED, CREATE_WORKTREE, PRUNE, REPLACE, RESUME, RUN_GATE, SPAWN, STOP, WAIT,
                            Action, Plan)
from ..spec.desired import DesiredAgent
from ..spec.loader import LoadedFleet
from ..store.records import BLOCKED as PHASE_BLOCKED
from ..store.records import (CREATING_WORKTREE, FAILED, PENDING, PRUNING, RUNNING, STARTING_SESSION, SUCCEEDED,
                     SessionRecord, now_iso)
from . import sessions
from .archive import archive_work, restore_hint
from .gates import record_gates, run_gate
from .worktrees import create_worktree, ensure_excluded, remove_worktree

RESUME_MESSAGE = ("Your previous run {ended}. Continue the task from where you stopped, then commit your "
                  "work.")


@dataclass
class Outcome:
    action: Action
    ok: bool
    message: str = ""
    blocked: bool = False  # refused at the last moment to protect work (exit 3)


@dataclass
class Executor:
    loaded: LoadedFleet
    observed: Observed
    grace: float = 10.0
    on_step: Callable[[Outcome], None] | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.observed.store

    def run(self, plan: Plan) -> list[Outcome]:
        ensure_excluded(self.observed.repo)
        if self.loaded.fleet.spec.locks:  # `fleet lock` in a session reads the slot counts from here
            write_lock_table(self.store.home / "locks",
                             {name: lock.slots for name, lock in self.loaded.fleet.spec.locks.items()})
        for action in plan.actions:
            try:
                message = self._do(action)
                outcome = Outcome(action, True, message)
            except FleetError as exc:
                outcome = Outcome(action, False, exc.message, blocked=exc.exit_code == EXIT_BLOCKED)
                if not outcome.blocked:
                    self._fail(action, exc.message)
            self.outcomes.append(outcome)
            if self.on_step:
                self.on_step(outcome)
        return self.outcomes

    @telemetry.traced_action
    def _do(self, action: Action) -> str:
        agent = self.loaded.agent(action.agent)
        obs = self.observed.agents.get(action.agent)
        handler = {CREATE_WORKTREE: self._create, SPAWN: self._spawn, RESUME: self._resume,
                   REPLACE: self._replace, STOP: self._stop, PRUNE: self._prune, WAIT: self._wait,
                   RUN_GATE: self._run_gate, BLOCKED: self._blocked}[action.kind]
        return handler(action, agent, obs)

    def _create(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        assert agent is not None
        rec = self._record(agent)
        rec.reason = CREATING_WORKTREE  # intent: proves ownership if we die inside `git worktree add`
        self.store.save(rec)
        path = create_worktree(self.observed.repo, agent, fleet=self.loaded.name,
                               repair=action.details.get("repair"))
        rec.reason = None
        self.store.save(rec)
        return f"worktree {path} on {agent.branch}"

    def _spawn(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None,
               *, resume: tuple[str, str] | None = None, prepared: sessions.Launch | None = None) -> str:
        assert agent is not None
        prepared = prepared or self._prepare(agent, resume)
        rec = self._record(agent)
        rec.reason = STARTING_SESSION  # intent, recorded before the process exists
        self.store.save(rec)
        started = sessions.launch(prepared, log=self.store.log_path(agent.name),
                                  exit_file=self.store.exit_path(agent.name))
        # attempts count runs of one spec: a restart or resume adds one, a new spec starts over
        rec.attempts = rec.attempts + 1 if rec.spec_hash == agent.spec_hash else 1
        if rec.spec_hash != agent.spec_hash:  # a new spec starts its gate attempts over
            rec.gate_failures, rec.gates_exhausted, rec.last_gate = {}, False, None
        rec.gates, rec.gates_pending, rec.gate_feedback = list(agent.gates), False, None
        rec.phase, rec.pid, rec.create_time = RUNNING, started.pid, started.create_time
        rec.session_id, rec.spec_hash, rec.session_spec = started.session_id, agent.spec_hash, agent.session_spec()
        rec.started_at, rec.finished_at, rec.exit_code, rec.reason = now_iso(), None, None, None
        rec.set_condition("Ready", "Unknown", "Running", f"pid {started.pid}")
        for waited in ("BudgetExhausted", "CrashLoopBackOff"):
            rec.clear_condition(waited, "Started")
        self.store.save(rec)
        return f"pid {started.pid}, log {self.store.log_path(agent.name)}"

    def _prepare(self, agent: DesiredAgent, resume: tuple[str, str] | None = None) -> sessions.Launch:
        extra = {"FLEET_RESUME": "1", "FLEET_MESSAGE": resume[1]} if resume else {}
        extra.update(telemetry.session_env(self.loaded, agent))  # TRACEPARENT of this action's span
        return sessions.prepare(agent, fleet=self.loaded.name, repo_id=str(self.observed.repo.common_dir),
                                lock_dir=self.store.home / "locks", resume=resume, extra_env=extra)

    def _resume(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        assert agent is not None
        rec = self._record(agent)
        code = obs.exit_code if obs else None
        ended = f"ended with exit code {code}" if code is not None else f"was stopped ({rec.reason or 'lost'})"
        message = rec.gate_feedback or RESUME_MESSAGE.format(ended=ended)
        return self._spawn(action, agent, obs, resume=(rec.session_id or "", message))

    def _replace(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        assert agent is not None
        prepared = self._prepare(agent)  # a spec that cannot start must not cost the running session
        self._stop(action, agent, obs)
        return self._spawn(action, agent, obs, prepared=prepared)

    def _stop(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        if "cmdline" in action.details:  # an orphan: no record, its pid and create-time were observed
            orphan = next(p for p in self.observed.orphans if p.pid == action.details["pid"])
            sessions.stop(orphan.pid, orphan.create_time, grace=self.grace)
            return f"stopped orphan pid {orphan.pid}"
        rec = obs.record if obs else None
        if rec is None or rec.pid is None:
            return "not running"
        sessions.stop(rec.pid, rec.create_time, grace=self.grace)
        self.store.clear_exit(rec.agent)
        rec.finished_at = now_iso()
        condition = action.details.get("condition")
        if condition:  # hung (Stalled) or too long (DeadlineExceeded): a failure, restarted per policy
            tail = last_lines(read_log_tail(self.store.log_path(rec.agent)) or "")
            api_error = last_api_error(rec)  # a CLI retrying a failing API prints nothing meanwhile
            if api_error:
                tail.append(f"last API error retried: {api_error}")
            rec.phase, rec.exit_code, rec.last_output = FAILED, None, tail
            rec.reason = action.reason + (f"; last output: {tail[-1]}" if tail else "; no output")
            rec.set_condition(condition, "True", condition, action.reason)
            rec.set_condition("Ready", "False", condition, action.reason)
            back_off(rec, self.loaded.fleet.spec.restartBackoff)
        else:
            rec.phase, rec.reason = PENDING, f"stopped: {action.reason}"
            rec.set_condition("Ready", "False", "Stopped", action.reason)
        self.store.save(rec)
        return f"stopped pid {rec.pid}"

    def _prune(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        assert obs is not None
        wt, branch = obs.worktree, action.details.get("branch")
        if wt is None and branch is None:
            self.store.remove(action.agent)
            return "removed the state record"
        if obs.record is not None:
            obs.record.reason = PRUNING
            self.store.save(obs.record)
        note = ""
        archived = bool(action.details.get("archive"))
        if archived:
            saved = archive_work(self.observed.repo, fleet=self.loaded.name, agent=action.agent, worktree=wt,
                                 branch=branch, base=self.loaded.fleet.spec.base)
            note = f"; archived to {saved.ref} ({restore_hint(saved, branch)})"
        remove_worktree(self.observed.repo, wt, branch, base=self.loaded.fleet.spec.base, archived=archived)
        self.store.remove(action.agent)
        return f"pruned {wt.path if wt else 'branch'} {branch or ''}{note}".replace("  ", " ")

    def _wait(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        if agent is None:
            return action.reason
        rec = self._record(agent)
        if rec.phase == RUNNING:
            return action.reason
        if rec.phase not in (FAILED, SUCCEEDED):
            rec.phase, rec.reason = PENDING, action.reason
        # a finished run keeps its phase, its backoff and why it ended; the wait is a condition
        condition = action.details.get("condition")
        if condition:
            rec.set_condition(condition, "True", condition, action.reason)
        rec.set_condition("Ready", "False", "Waiting", action.reason)
        self.store.save(rec)
        return action.reason

    def _run_gate(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        """Run the agent's gates in its worktree; the reconciler's result, never the agent's word."""
        assert agent is not None
        rec = self._record(agent)
        verdict = record_gates(rec, agent, lambda name, gate: run_gate(name, gate, agent,
                                                                         log=self.store.log_path(agent.name)))
        self.store.save(rec)
        if verdict.feed_back and action.details.get("resume"):
            return f"{verdict.message}; resuming: " + self._resume(action, agent, obs)
        return verdict.message

    def _blocked(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        rec = obs.record if obs and obs.record else (self._record(agent) if agent else None)
        if rec is not None and rec.phase != RUNNING:
            rec.phase, rec.reason = PHASE_BLOCKED, action.reason
            rec.set_condition("Ready", "False", "Blocked", action.reason)
            self.store.save(rec)
        return action.reason

    def _fail(self, action: Action, message: str) -> None:
        agent = self.loaded.agent(action.agent)
        if agent is None:
            return
        rec = self._record(agent)
        if rec.phase != RUNNING:
            rec.phase, rec.reason = "Failed", f"{action.kind} failed: {message}"
            rec.set_condition("Ready", "False", "ActionFailed", rec.reason)
            self.store.save(rec)

    def _record(self, agent: DesiredAgent) -> SessionRecord:
        """The agent's current record (re-read: an earlier action may have changed it)."""
        rec = self.store.load(agent.name) or SessionRecord(agent=agent.name, fleet=self.loaded.name)
        rec.tier, rec.runtime, rec.model = agent.tier_name, agent.tier.runtime, agent.tier.model
        rec.branch, rec.worktree, rec.protect = agent.branch, str(agent.worktree), agent.protect
        return rec
