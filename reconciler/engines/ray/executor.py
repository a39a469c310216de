"""Executing a plan on a Ray cluster: the local Executor with sessions, stops, gates and prunes
done by the agents' actors and on the remote.

What each action means under ray:

- create-worktree: create the agent's branch on the remote from base (with this fleet's
  owner ref); the session clones it on whichever node the cluster picks.
- spawn/resume: a new detached actor (or the agent's existing one, whose clone is kept)
  runs the session; the record says Running from then on, the actor may still wait for
  a cluster slot.
- stop: the actor TERMs (then KILLs) the session and pushes the branch.
- run-gate: the gate runs in the clone, on the session's node.
- prune: the actor releases its clone (push, archive with --archive, or refuse), then
  the branch is deleted on the remote, under a lease, if nothing on it is unmerged (or
  it was archived to refs/fleet/archive/... on the remote first).

Records are written before and after each step as the local executor does, so a killed
apply leaves a state the next observation converges from.
"""
from __future__ import annotations

import os
import uuid
from typing import Any

from ... import telemetry
from ...act.archive import archive_ref
from ...act.executor import Executor
from ...act.gates import GateResult, record_gates
from ...errors import EXIT_BLOCKED, FleetError
from ...observe.processes import ENV_AGENT, ENV_FLEET, ENV_HASH, ENV_REPO, ENV_SESSION
from ...observe.progress import last_lines
from ...act.lifecycle import back_off
from ...observe.snapshot import ObservedAgent
from ...plan.actions import Action
from ...runtimes import get_runtime
from ...runtimes.base import SessionRequest
from ...spec.desired import DesiredAgent
from ...spec.durations import parse_duration
from ...spec.models import FromEnv, Gate
from ...store.records import (CREATING_WORKTREE, FAILED, PENDING, PRUNING, RUNNING, STARTING_SESSION, SessionRecord, now_iso)
from . import cluster
from .actor import Launch, SessionConfig
from .observe import RayObserved, Session, append_log, node_label


class RayExecutor(Executor):
    observed: RayObserved

    @property
    def _ray(self) -> Any:
        assert self.observed.ray is not None
        return self.observed.ray

    def _create(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        assert agent is not None and self.observed.remote is not None
        rec = self._record(agent)
        rec.reason = CREATING_WORKTREE  # intent: the owner ref goes with the branch in one atomic push
        self.store.save(rec)
        sha = self.observed.remote.create_branch(agent.branch, agent.base)
        rec.reason = None
        self.store.save(rec)
        return f"branch {agent.branch} at {sha[:12]} ({agent.base}) on {self.observed.remote.url}"

    def _prepare(self, agent: DesiredAgent, resume: tuple[str, str] | None = None) -> Any:  # type: ignore[override]
        """The run, checked here (a bad spec must not cost a running session); argv is built on the node."""
        session_id = resume[0] if resume else str(uuid.uuid4())
        req = SessionRequest(agent=agent.name, workdir=agent.worktree, prompt=agent.prompt, session_id=session_id,
                             model=agent.tier.model, args=tuple(agent.tier.args), command=agent.command,
                             locks=agent.locks)
        runtime = get_runtime(agent.tier.runtime)
        try:
            argv = runtime.resume_argv(req, resume[1]) if resume else runtime.start_argv(req)
        except ValueError as exc:
            raise FleetError(f"agent {agent.name}: {exc}") from None
        if argv is None:
            raise FleetError(f"runtime {runtime.name} cannot resume this session")
        assert self.observed.remote is not None
        env: dict[str, str] = {}
        for key, value in agent.env.items():
            if isinstance(value, FromEnv):
                if value.fromEnv not in os.environ:
                    raise FleetError(f"agent {agent.name}: env {key} reads ${value.fromEnv}, which is not set",
                                     hint=f"export {value.fromEnv} in the environment that runs fleet")
                env[key] = os.environ[value.fromEnv]
            else:
                env[key] = value
        env.update({ENV_FLEET: self.loaded.name, ENV_REPO: self.observed.remote.url, ENV_AGENT: agent.name,
                    ENV_HASH: agent.spec_hash, ENV_SESSION: session_id, "FLEET_BRANCH": agent.branch})
        if resume:
            env.update({"FLEET_RESUME": "1", "FLEET_MESSAGE": resume[1]})
        env.update(telemetry.session_env(self.loaded, agent))
        return Launch(run_id=uuid.uuid4().hex, runtime=agent.tier.runtime, prompt=agent.prompt,
                      session_id=session_id, spec_hash=agent.spec_hash, model=agent.tier.model,
                      args=tuple(agent.tier.args), command=agent.command, locks=agent.locks, env=env,
                      resume_message=resume[1] if resume else None)

    def _spawn(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None,  # type: ignore[override]
               *, resume: tuple[str, str] | None = None, prepared: Launch | None = None) -> str:
        assert agent is not None
        launch = prepared or self._prepare(agent, resume)
        rec = self._record(agent)
        rec.reason = STARTING_SESSION  # intent, recorded before the actor exists
        self.store.save(rec)
        session = self.observed.sessions.get(agent.name)
        known = self.observed.ledger.setdefault(agent.name, {})
        if session is not None and session.state in ("exited", "idle"):
            # the agent's clone is still on its node (kept for gates, or a refused release): run there
            status = cluster.call(self._ray, session.handle.start, launch)
            session.status = status
            where = f"in its clone on node {node_label(status)}"
            known["run_id"] = launch.run_id  # same actor, same log: the copy goes on where it was
        else:
            if session is not None:
                raise FleetError(f"agent {agent.name} already has a session actor ({session.state})")
            handle = cluster.create(self._ray, self.loaded, self._config(agent), launch)
            self.observed.sessions[agent.name] = Session(handle, None)
            free, total = self.observed.slots
            where = (f"new actor {self.observed.namespace}/{agent.name} (1 {self._resource}; "
                     f"{free:g} of {total:g} free in the cluster)")
            known.update(run_id=launch.run_id, instance=None, log_offset=0)  # a new actor's log starts over
        self.observed.save_ledger()
        # attempts count runs of one spec: a restart or resume adds one, a new spec starts over
        rec.attempts = rec.attempts + 1 if rec.spec_hash == agent.spec_hash else 1
        if rec.spec_hash != agent.spec_hash:
            rec.gate_failures, rec.gates_exhausted, rec.last_gate = {}, False, None
        rec.gates, rec.gates_pending, rec.gate_feedback = list(agent.gates), False, None
        rec.phase, rec.pid, rec.create_time = RUNNING, None, None
        rec.session_id, rec.spec_hash, rec.session_spec = launch.session_id, agent.spec_hash, agent.session_spec()
        rec.started_at, rec.finished_at, rec.exit_code, rec.reason = now_iso(), None, None, None
        rec.set_condition("Ready", "Unknown", "Running", f"ray actor {self.observed.namespace}/{agent.name}")
        for waited in ("BudgetExhausted", "CrashLoopBackOff"):
            rec.clear_condition(waited, "Started")
        self.store.save(rec)
        return f"session {where}"

    def _stop(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        session = self.observed.sessions.get(action.agent)
        if session is None:
            return "not running"
        status = self._halt(action.agent, session)
        if "cmdline" in action.details:  # a run the records did not know: nothing to record
            return f"stopped the session of actor {self.observed.namespace}/{action.agent}"
        rec = obs.record if obs else None
        if rec is None:
            return f"stopped actor {self.observed.namespace}/{action.agent}"
        rec.finished_at = now_iso()
        condition = action.details.get("condition")
        if condition:  # hung (Stalled) or too long (DeadlineExceeded): a failure, restarted per policy
            tail = last_lines(self._log_tail(session, status))
            rec.phase, rec.exit_code, rec.last_output = FAILED, None, tail
            rec.reason = action.reason + (f"; last output: {tail[-1]}" if tail else "; no output")
            rec.set_condition(condition, "True", condition, action.reason)
            rec.set_condition("Ready", "False", condition, action.reason)
            back_off(rec, self.loaded.fleet.spec.restartBackoff)
        else:
            rec.phase, rec.reason = PENDING, f"stopped: {action.reason}"
            rec.set_condition("Ready", "False", "Stopped", action.reason)
        self.store.save(rec)
        where = f" on node {node_label(status)}" if status else ""
        pushed = f"; push failed: {status['push_error']}" if status and status.get("push_error") else ""
        return f"stopped the session{where}{pushed}"

    def _halt(self, name: str, session: Session) -> dict[str, Any] | None:
        if session.status is None:
            if self.observed.ledger.get(name, {}).get("instance") is not None:
                raise FleetError(f"the session actor of {name} does not answer (its node may be unreachable); "
                                 "not stopping what cannot be pushed", exit_code=EXIT_BLOCKED)
            # never placed: nothing ran, nothing to push
            cluster.kill(self._ray, session.handle, name=name, ns=self.observed.namespace)
            self.observed.sessions.pop(name, None)
            return None
        status = cluster.call(self._ray, session.handle.stop, self.grace, timeout=self.grace + cluster.CALL_TIMEOUT)
        session.status = status
        return status

    def _run_gate(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        """The agent's gates, in its clone on its node; the reconciler's result, never the agent's word."""
        assert agent is not None
        rec = self._record(agent)
        session = self.observed.sessions.get(agent.name)
        if session is None or session.status is None:
            rec.gates_pending, rec.phase, rec.finished_at = False, FAILED, rec.finished_at or now_iso()
            rec.reason = "the session's clone was lost before its gates ran; it runs again from its pushed branch"
            rec.set_condition("Ready", "False", "CloneLost", rec.reason)
            back_off(rec, self.loaded.fleet.spec.restartBackoff)
            self.store.save(rec)
            return rec.reason

        def on_node(name: str, gate: Gate) -> GateResult:
            out = cluster.call(self._ray, session.handle.run_gate, name, gate.run, parse_duration(gate.timeout),
                               timeout=parse_duration(gate.timeout) + cluster.CALL_TIMEOUT)
            return GateResult(out["exit_code"] == 0, out["exit_code"], out["output"], out["seconds"])

        verdict = record_gates(rec, agent, on_node)
        self.store.save(rec)
        if verdict.feed_back and action.details.get("resume"):
            return f"{verdict.message}; resuming: " + self._resume(action, agent, obs)
        return f"{verdict.message} (on node {session.node})"

    def _prune(self, action: Action, agent: DesiredAgent | None, obs: ObservedAgent | None) -> str:
        assert obs is not None and self.observed.remote is not None
        remote, name = self.observed.remote, action.agent
        branch = action.details.get("branch")
        archived = bool(action.details.get("archive"))
        if obs.record is not None:
            obs.record.reason = PRUNING
            self.store.save(obs.record)
        ref = archive_ref(self.loaded.name, name)
        notes: list[str] = []
        clone_archive = None
        session = self.observed.sessions.get(name)
        if session is not None:
            if session.status is None:
                raise FleetError(f"prune refused: the session actor of {name} does not answer (not placed yet, or "
                                 "its node is unreachable); its clone cannot be checked", exit_code=EXIT_BLOCKED)
            saved = release(self.observed, name, session, archive_ref=ref if archived else None)
            if not saved["ok"]:
                hint = "" if archived else " (--archive saves it on the remote first)"
                raise FleetError(f"prune refused: the clone on node {session.node} keeps work that is not on the "
                                 f"remote: {saved['refused']}{hint}", exit_code=EXIT_BLOCKED)
            clone_archive = saved["archived"]
            notes.append(f"released the clone on node {session.node}" +
                         (f", its work archived to {clone_archive}" if clone_archive else ""))
            remote.refresh()  # the release pushed the branch
        if branch and branch in remote.heads:
            sha = remote.heads[branch]
            lost = remote.unreachable(sha, self.loaded.fleet.spec.base)
            if lost and not archived:
                raise FleetError(f"prune refused: branch {branch} has {len(lost)} unmerged commit(s) on the remote "
                                 f"({', '.join(lost[:3])}) (--archive saves them first)", exit_code=EXIT_BLOCKED)
            if lost and not (clone_archive and remote.contains(clone_archive, sha)):
                branch_ref = ref + "-branch" if clone_archive else ref
                remote.archive(sha, branch_ref)
                notes.append(f"branch archived to {branch_ref}")
            remote.delete_branch(branch, sha)
            notes.append(f"deleted branch {branch} on the remote")
        self.store.remove(name)
        self.observed.ledger.pop(name, None)
        self.observed.save_ledger()
        return "; ".join(notes) or "removed the state record"

    def _record(self, agent: DesiredAgent) -> SessionRecord:
        rec = super()._record(agent)
        rec.worktree = None  # the clone is on a node; status shows where
        return rec

    def _config(self, agent: DesiredAgent) -> SessionConfig:
        placement = self.loaded.fleet.spec.placement
        assert self.observed.remote is not None
        return SessionConfig(fleet=self.loaded.name, agent=agent.name, remote=self.observed.remote.url,
                             branch=agent.branch, base=agent.base,
                             workdir=placement.workdir or "~/.cache/fleet/ray",
                             push_interval=parse_duration(placement.pushInterval))

    @property
    def _resource(self) -> str:
        return self.loaded.fleet.spec.placement.resource

    def _log_tail(self, session: Session, status: dict[str, Any] | None) -> str:
        if status is None:
            return ""
        size = int(status.get("log_size") or 0)
        data, _ = cluster.call(self._ray, session.handle.read_log, max(0, size - 16384))
        return data.decode(errors="replace")


def release(observed: RayObserved, name: str, session: Session, *, archive_ref: str | None) -> dict[str, Any]:
    """Ask the actor to free its clone (see SessionActor.release); on success the actor is killed."""
    ray = observed.ray
    known = observed.ledger.setdefault(name, {})
    same = session.status is not None and known.get("instance") == session.status.get("instance")
    offset = known.get("log_offset", 0) if same else 0
    if not same and session.status is not None:
        known.update(instance=session.status.get("instance"), log_offset=0)
    saved = cluster.call(ray, session.handle.release, archive_ref, offset)
    append_log(observed, name, saved.get("log") or b"")
    if saved["ok"]:
        cluster.kill(ray, session.handle, name=name, ns=observed.namespace)
        observed.sessions.pop(name, None)
        known["instance"] = None
    observed.save_ledger()
    return saved
