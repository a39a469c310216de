"""The ray engine (docs/scale-out.md): the `Engine` protocol on a Ray cluster.

Planning is the planner's: caps, budgets, restart policy and backoff, gates, drift and
the prune rules are exactly those of a local fleet, and the record lifecycle is the
shared executor's (engines/executor.py). What differs is what each step is carried out on:

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

and one step between recording ended sessions and acting: an ended session's actor is
released, its clone pushed (or archived) and deleted, so the cluster slot it held is
free for the sessions this pass starts.
"""
from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

from ... import telemetry
from ...act.archive import archive_ref
from ...act.gates import GateResult
from ...act.sessions import owner_env, resume_env, session_argv
from ...errors import EXIT_BLOCKED, FleetError
from ...observe.delivery import observe_delivery
from ...observe.gitrepo import GitRepo
from ...observe.gittree import run_git
from ...observe.snapshot import Observed, ObservedAgent, state_store
from ...plan.actions import BLOCKED, CREATE_WORKTREE, DELIVER, MERGE, PRUNE, PUSH, Action, Plan
from ...plan.delivery import plan_delivery
from ...plan.status import AgentStatus
from ...spec.desired import DesiredAgent
from ...spec.durations import parse_duration
from ...spec.loader import LoadedFleet
from ...spec.models import Gate
from ...store.records import RUNNING, SessionRecord, StateStore
from ..base import GateRunner, Halted, Launched, WorkspaceLost
from . import cluster, lease
from .actor import Launch, SessionConfig
from .lease import MirroredStore
from .observe import (
    OFFLINE_NOTE,
    RayObserved,
    Session,
    append_log,
    delivered_into,
    node_label,
    observe,
    observe_offline,
    read_json,
)
from .remote import Remote

BRANCH_COPIES = "refs/fleet/remote-heads"  # <fleet>/<branch>: the agents' branches on spec.remote, for delivery


class RayEngine:
    name = "ray"
    supports_saved_plans = False  # a saved plan would have to fix the cluster's state too

    def __init__(self, loaded: LoadedFleet, *, connect: bool = True) -> None:
        self.loaded = loaded
        self.repo = GitRepo(loaded.repo)
        self._mirrored = MirroredStore(state_store(self.repo, loaded.name))  # records on the cluster too (lease.py)
        self.store: StateStore = self._mirrored
        self._observed_remote: Remote | None = None  # the last observation's: steps without one use it
        # False (`fleet diff` without --connect): observe local state only, never the cluster or the remote
        self.connect = connect
        self.retired: list[str] = []  # fleet's own actors a delete removed (lease.retire)

    # -- observe and plan ------------------------------------------------------------------

    def observe(self, *, inspect_all: bool = False, readonly: bool = True) -> RayObserved:
        if not self.connect:
            if not readonly:
                raise FleetError("internal: an engine that may not connect only previews")
            observed = observe_offline(self.loaded, repo=self.repo, store=self.store)
        else:
            observed = observe(self.loaded, inspect_all=inspect_all, readonly=readonly, repo=self.repo,
                               store=self.store)
            if not readonly:
                self._record_orphans(observed)
        self._observed_remote = observed.remote
        if self.loaded.fleet.spec.delivery is not None:
            if self.connect and not readonly:  # status and diff read the copies as the last pass made them
                assert observed.remote is not None
                into = self.loaded.fleet.spec.delivery.into  # its objects too, for _catch_up_target
                observed.remote.copy_branches(self.repo.common_dir, [*[a.branch for a in self.loaded.agents], into],
                                              self._branch_prefix)
                self._catch_up_target(observed.remote)
            observed.delivery = observe_delivery(self.loaded, self.repo, observed, self.branch_ref)
        return observed

    def _catch_up_target(self, remote: Remote) -> None:
        """The delivery target here takes what the remote's has beyond it, fast-forward only: a
        fresh checkout (the controller's machine lost) continues from what was delivered and
        pushed; a target here that diverged is left as it is (its push is then rejected: a
        condition, never a force). Not while the target is checked out (its files would lag)."""
        delivery = self.loaded.fleet.spec.delivery
        assert delivery is not None
        into = delivery.into
        theirs = remote.heads.get(into)
        main, linked = self.repo.worktrees()
        if theirs is None or any(w is not None and w.branch == into for w in (main, *linked)):
            return
        here = self.repo.common_dir
        ours = run_git(here, "rev-parse", "--verify", "--quiet", f"refs/heads/{into}").stdout.strip()
        if ours == theirs or (ours and run_git(here, "merge-base", "--is-ancestor", ours, theirs).returncode != 0):
            return
        run_git(here, "update-ref", f"refs/heads/{into}", theirs, ours)  # compare-and-swap

    @property
    def _branch_prefix(self) -> str:
        return f"{BRANCH_COPIES}/{self.loaded.name}/"

    def branch_ref(self, agent: DesiredAgent) -> str:
        """The delivery queue integrates what the controller merged on the remote (remote.py
        "Fencing"), copied here by each acting pass: never a per-attempt ref."""
        return self._branch_prefix + agent.branch

    def _record_orphans(self, observed: RayObserved) -> None:
        """Condition OrphanWork on every agent whose fenced attempts pushed work the branch does not
        have (remote.py "Fencing"): kept on the remote under the attempt's ref, never merged silently."""
        remote = observed.remote
        assert remote is not None
        for name, agent in observed.agents.items():
            rec = agent.record
            if rec is None:
                continue
            branch = rec.branch or self.loaded.fleet.branch_prefix + name
            found = remote.orphans(branch)
            had = next((c for c in rec.conditions if c.type == "OrphanWork" and c.status == "True"), None)
            if found:
                parts = [f"{ref} ({len(commits)} commit(s): {', '.join(commits[:3])})" for ref, commits in found]
                message = (f"a fenced attempt pushed work that is not on branch {branch}; kept on the remote "
                           f"under {'; '.join(parts)}. Review with `git log {branch}..REF`, merge or cherry-pick "
                           "what is wanted, then delete the ref")
                if had is None or had.message != message:
                    rec.set_condition("OrphanWork", "True", "AttemptFenced", message)
                    self.store.save(rec)
            elif had:
                rec.clear_condition("OrphanWork", "Resolved")
                self.store.save(rec)

    def controller(self, *, command: str, timeout: float | None,
                   on_wait: Callable[[str], None] | None) -> AbstractContextManager[object]:
        """The fleet's lease on the cluster (lease.py), held by apply, delete and the loop (for as long
        as it runs); a new checkout takes the cluster's records on acquiring it."""
        ray = cluster.connect(self.loaded)
        ledger = self.store.home / "ray" / self.loaded.name / "sessions.json"
        held = lease.holding(ray, cluster.namespace(self.loaded), self._mirrored, ledger, command=command,
                             checkout=self.repo.common_dir, timeout=timeout, on_wait=on_wait,
                             keep=command == "fleet reconcile")
        return self._retiring(ray, held) if command == "fleet delete" else held

    @contextmanager
    def _retiring(self, ray: Any, held: AbstractContextManager[lease.ControllerLease]) -> Iterator[object]:
        """A delete pass that leaves the fleet with nothing on the cluster or the remote removes the
        fleet's own actors too (lease.retire): the controller, its records and log copies, idle locks."""
        with held as holder:
            yield holder
            if self._nothing_left(ray):
                self.retired = lease.retire(ray, cluster.namespace(self.loaded), holder)
                if self._observed_remote is not None:  # and the copies of its branches here (delivery)
                    self._observed_remote.copy_branches(self.repo.common_dir, [], self._branch_prefix, keep=False)

    def _nothing_left(self, ray: Any) -> bool:
        """No record, no session actor, no branch of this fleet on the remote (fetched now): every
        agent is gone and its work is safe. Anything else (a refused prune, a failed step) keeps all."""
        if self.store.all() or cluster.sessions(ray, cluster.namespace(self.loaded)):
            return False
        remote = Remote.of(self.loaded, fleet_home=self.store.home, objects=self.repo.common_dir / "objects")
        try:
            remote.refresh()
        except FleetError:
            return False
        return not remote.owned  # a fenced attempt's orphan ref stays on the remote, listed by `fleet archives`

    def adjust(self, plan: Plan, observed: Observed) -> Plan:
        """The planner's plan, with `create-worktree` meaning "create the branch on the remote"."""
        ray_obs = _ray(observed)
        assert ray_obs.remote is not None
        actions = []
        freed = set()
        for action in plan.actions:
            if action.kind == CREATE_WORKTREE:
                branch = action.details.get("branch")
                if branch in ray_obs.remote.heads:
                    freed.add(action.agent)
                    continue  # the branch is there: sessions clone it on their node
                action = replace(action, reason=f"branch {branch} from {self.loaded.fleet.spec.base} on the remote "
                                                f"(sessions clone it on their node)",
                                 details={"branch": branch, "remote": ray_obs.remote.url})
            actions.append(action)
        notes = self._notes(ray_obs) if self.connect else [OFFLINE_NOTE]
        if freed and self.loaded.fleet.spec.delivery is not None:
            # the planner held back the queue for agents "busy" creating a worktree, which under ray is
            # nothing to do: the shared queue planned again without them (--target agents only, as before)
            kept = [a for a in actions if a.kind not in (MERGE, DELIVER, PUSH)]
            chosen = freed | {a.agent for a in plan.actions if a.kind in (MERGE, DELIVER)}
            queue, queue_notes = plan_delivery(self.loaded, observed, busy={a.agent for a in kept}, chosen=chosen)
            actions = kept + queue
            notes += [n for n in queue_notes if n not in plan.notes]
        if self.connect:
            notes += [f"branch {b} not moved to its newest attempt: {why}"
                      for b, why in sorted(ray_obs.remote.merge_problems.items())]
            notes += [f"{b}: work of a fenced attempt kept under {ref} ({len(commits)} commit(s) not on the branch)"
                      for b in sorted(ray_obs.remote.owned) for ref, commits in ray_obs.remote.orphans(b)]
        return replace(plan, actions=tuple(actions), notes=plan.notes + tuple(notes))  # budgets, projections kept

    def release_ended(self, observed: Observed, plan: Plan) -> None:
        """Free the clone and slot of every session that has ended and whose record is up to date.

        What is not on the remote is pushed, or archived under refs/fleet/archive/... on the
        remote; if neither works the actor and its clone stay (condition CloneKept) and a
        restart runs in that clone.
        """

        observed = _ray(observed)
        released = False
        pruned = {a.agent for a in plan.actions if a.kind == PRUNE}  # their prune releases (and archives) once
        # a refused prune leaves the agent's clone in place, as the plan says: not archived and deleted here
        refused = {a.agent for a in plan.actions
                   if a.kind == BLOCKED and (self.loaded.agent(a.agent) is None or "prune refused" in a.reason)}
        for name in self.ended(observed):
            if name in pruned or name in refused:
                continue
            session = observed.sessions[name]
            rec = observed.agents[name].record if name in observed.agents else None
            ref = archive_ref(self.loaded.name, name)
            node = session.node
            try:
                saved = release(observed, name, session, archive_ref=ref, retention_ref=ref)
            except FleetError as exc:
                saved = {"ok": False, "refused": exc.message, "archived": None}
            released = released or bool(saved["ok"])
            if rec is None:
                continue
            if saved["ok"]:
                rec.clear_condition("CloneKept", "Released")
                if saved["archived"]:
                    rec.set_condition("WorkArchived", "True", "Archived",
                                      f"work not on the branch was archived to {saved['archived']} on the remote "
                                      f"when the clone on node {node} was released")
            else:
                rec.set_condition("CloneKept", "True", "PushFailed",
                                  f"the clone stays on node {node}: {saved['refused']}")
            self.store.save(rec)
        if released and observed.remote is not None:
            observed.remote.refresh()  # a release pushes its branch: the plan's leases must see the new tips

    @staticmethod
    def ended(observed: RayObserved) -> list[str]:
        """Agents whose actor holds a clone its session no longer needs (ended, result recorded, no gates)."""
        out = []
        for name, session in sorted(observed.sessions.items()):
            rec = observed.agents[name].record if name in observed.agents else None
            if session.status is None or session.state not in ("exited", "idle"):
                continue
            if rec is not None and (rec.phase == RUNNING or rec.gates_pending):
                continue  # not folded yet, or its gates still run in the clone
            out.append(name)
        return out

    # -- the executor's steps --------------------------------------------------------------

    def before_actions(self) -> None:
        return None

    def workspace_of(self, agent: DesiredAgent) -> str | None:
        return None  # the clone is on a node; status shows where

    def create_workspace(self, action: Action, agent: DesiredAgent) -> str:
        remote = self._remote()
        sha = remote.create_branch(agent.branch, agent.base)  # the owner ref goes with it in one atomic push
        return f"branch {agent.branch} at {sha[:12]} ({agent.base}) on {remote.url}"

    def prepare(self, agent: DesiredAgent, resume: tuple[str, str] | None) -> Launch:
        """The run, checked here (a bad spec must not cost a running session); argv is built on the node."""
        session_id = resume[0] if resume else str(uuid.uuid4())
        session_argv(agent, session_id, resume)  # refuses what the runtime refuses, before anything stops
        env, env_from = split_env(agent)
        env.update(owner_env(agent, fleet=self.loaded.name, repo_id=self._remote().url, session_id=session_id))
        env.update(resume_env(resume))
        env.update(telemetry.session_env(self.loaded, agent))
        return Launch(run_id=uuid.uuid4().hex, runtime=agent.tier.runtime, prompt=agent.prompt,
                      session_id=session_id, spec_hash=agent.spec_hash, model=agent.tier.model,
                      args=tuple(agent.tier.args), command=agent.command, locks=agent.locks, env=env,
                      resume_message=resume[1] if resume else None, env_from=env_from,
                      secrets_dir=self.loaded.fleet.spec.placement.secretsDir,
                      lock_slots={name: lock.slots for name, lock in self.loaded.fleet.spec.locks.items()},
                      max_budget_usd=agent.max_budget_usd)

    def launch(self, agent: DesiredAgent, prepared: object, observed: Observed) -> Launched:
        assert isinstance(prepared, Launch)
        ray_obs, ray = _ray(observed), self._ray(observed)
        # fence the agent's previous attempt before this one can start anywhere (remote.py "Fencing")
        prepared = replace(prepared, generation=self._remote(ray_obs).new_attempt(agent.branch))
        session = ray_obs.sessions.get(agent.name)
        known = ray_obs.ledger.setdefault(agent.name, {})
        if session is not None and session.state in ("exited", "idle"):
            # the agent's clone is still on its node (kept for gates, or a refused release): run there
            status = cluster.call(ray, session.handle.start, prepared)
            session.status = status
            where = f"in its clone on node {node_label(status)}, attempt {prepared.generation}"
            known["run_id"] = prepared.run_id  # same actor, same log: the copy goes on where it was
        else:
            if session is not None:
                raise FleetError(f"agent {agent.name} already has a session actor ({session.state})")
            handle = cluster.create(ray, self.loaded, self._config(agent), prepared)
            ray_obs.sessions[agent.name] = Session(handle, None)
            free, total = ray_obs.slots
            where = (f"new actor {ray_obs.namespace}/{agent.name}, attempt {prepared.generation} (1 {self._resource}; "
                     f"{free:g} of {total:g} free in the cluster)")
            known.update(run_id=prepared.run_id, instance=None, log_offset=0)  # a new actor's log starts over
        ray_obs.save_ledger()
        return Launched(session_id=prepared.session_id, pid=None, create_time=None, where=f"session {where}",
                        ready=f"ray actor {ray_obs.namespace}/{agent.name}")

    def stop_orphan(self, action: Action, observed: Observed, *, grace: float) -> str:
        ray_obs = _ray(observed)
        session = ray_obs.sessions.get(action.agent)
        if session is None:
            return "not running"
        self._halt(ray_obs, action.agent, session, grace)
        return f"stopped the session of actor {ray_obs.namespace}/{action.agent}"

    def halt(self, action: Action, rec: SessionRecord, observed: Observed, *, grace: float) -> Halted | None:
        ray_obs = _ray(observed)
        session = ray_obs.sessions.get(action.agent)
        if session is None:
            return None
        status = self._halt(ray_obs, action.agent, session, grace)
        where = f" on node {node_label(status)}" if status else ""
        pushed = f"; push failed: {status['push_error']}" if status and status.get("push_error") else ""
        return Halted(log_tail=self._log_tail(ray_obs, session, status), message=f"stopped the session{where}{pushed}")

    def gate_runner(self, agent: DesiredAgent, observed: Observed) -> GateRunner | WorkspaceLost:
        """The agent's gates, in its clone on its node."""
        ray_obs = _ray(observed)
        session = ray_obs.sessions.get(agent.name)
        if session is None or session.status is None:
            return WorkspaceLost("the session's clone was lost before its gates ran; it runs again from its "
                                 "pushed branch", "CloneLost")
        ray = self._ray(observed)

        def on_node(name: str, gate: Gate) -> GateResult:
            out = cluster.call(ray, session.handle.run_gate, name, gate.run, parse_duration(gate.timeout),
                               timeout=parse_duration(gate.timeout) + cluster.CALL_TIMEOUT)
            return GateResult(out["exit_code"] == 0, out["exit_code"], out["output"], out["seconds"])

        return GateRunner(on_node, where=f" (on node {session.node})")

    def prune(self, action: Action, obs: ObservedAgent, observed: Observed) -> str:
        ray_obs = _ray(observed)
        remote, name = self._remote(ray_obs), action.agent
        branch = action.details.get("branch")
        archived = bool(action.details.get("archive"))
        ref = archive_ref(self.loaded.name, name)
        notes: list[str] = []
        clone_archive = None
        session = ray_obs.sessions.get(name)
        if session is not None:
            if session.status is None:
                raise FleetError(f"prune refused: the session actor of {name} does not answer (not placed yet, or "
                                 "its node is unreachable); its clone cannot be checked", exit_code=EXIT_BLOCKED)
            saved = release(ray_obs, name, session, archive_ref=ref if archived else None, retention_ref=ref)
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
            lost = remote.unreachable(sha, self.loaded.fleet.spec.base, delivered_into(self.loaded))
            if lost and not archived:
                raise FleetError(f"prune refused: branch {branch} has {len(lost)} unmerged commit(s) on the remote "
                                 f"({', '.join(lost[:3])}) (--archive saves them first)", exit_code=EXIT_BLOCKED)
            if lost and not (clone_archive and remote.contains(clone_archive, sha)):
                branch_ref = ref + "-branch" if clone_archive else ref
                remote.archive(sha, branch_ref)
                notes.append(f"branch archived to {branch_ref}")
            remote.delete_branch(branch, sha)
            notes.append(f"deleted branch {branch} on the remote")
        ray_obs.ledger.pop(name, None)
        ray_obs.save_ledger()
        return "; ".join(notes) or "removed the state record"

    # -- views -----------------------------------------------------------------------------

    def status_rows(self, observed: Observed, rows: list[AgentStatus]) -> list[AgentStatus]:
        """Fill in what only the actors know: node, clone, dirty, ahead, pid; placing sessions are Pending."""
        observed = _ray(observed)
        remote = observed.remote
        base = self.loaded.fleet.spec.base
        out = []
        for row in rows:
            session = observed.sessions.get(row.agent)
            status = session.status if session else None
            changes: dict[str, Any] = {"node": observed.ledger.get(row.agent, {}).get("node")}
            if session is not None and status is None:
                changes.update(phase="Pending", reason=self._placing_reason(observed))
            elif status is not None:
                changes.update(node=node_label(status), worktree=f"{status['node_ip']}:{status['clone']}",
                               dirty=len(status.get("dirty", [])), ahead=status.get("ahead"),
                               pid=status.get("pid") if status["state"] == "running" else None)
                if status["state"] == "preparing":
                    changes["reason"] = f"cloning {remote.url if remote else 'the remote'} on node {node_label(status)}"
            elif remote is not None and row.branch in remote.heads and row.branch in remote.owned:
                changes["ahead"] = remote.ahead(remote.heads[row.branch], base)
            out.append(replace(row, **changes))
        return out

    def log_chunks(self, name: str, *, follow: bool, more: Callable[[], bool] | None = None) -> Iterator[bytes]:
        """The local copy of the session's output, then what its node has beyond it (-f: until that
        session ends; a resume or restart on another actor is not followed)."""
        repo = GitRepo(self.loaded.repo)
        store = state_store(repo, self.loaded.name)
        path = store.log_path(name)
        try:
            ray = cluster.connect(self.loaded)
        except FleetError as exc:
            if not path.exists():
                raise
            yield path.read_bytes()  # what was copied here is still worth seeing
            print(f"fleet: only the copy under .fleet/logs; the node's log is unreachable: {exc.message}",
                  file=sys.stderr)
            return
        handles = cluster.sessions(ray, cluster.namespace(self.loaded))
        if not path.exists() and name not in handles:
            known = ", ".join(a.name for a in self.loaded.agents)
            raise FleetError(f"no log for agent {name!r} in fleet {self.loaded.name}",
                             hint=f"agents: {known}" if self.loaded.agent(name) is None else "it has not run yet")
        if path.exists():
            yield path.read_bytes()
        if name not in handles:
            return
        known = read_json(store.home / "ray" / self.loaded.name / "sessions.json").get(name, {})
        handle = handles[name]
        probe = cluster.probe(ray, {name: handle}).get(name)
        if probe is None or probe.status is None:
            return
        same = known.get("instance") == probe.status.get("instance")
        offset = known.get("log_offset", 0) if same and path.exists() else 0
        while True:
            try:
                data, _size = cluster.call(ray, handle.read_log, offset)
                status = cluster.call(ray, handle.status) if follow else None
            except FleetError:
                return  # released or lost meanwhile: what was copied is all there is
            if data:
                yield data
                offset += len(data)
            if not follow or (status is not None and status["state"] not in ("preparing", "running") and not data):
                return
            time.sleep(0.5)

    # -- helpers ---------------------------------------------------------------------------

    def _halt(self, observed: RayObserved, name: str, session: Session, grace: float) -> dict[str, Any] | None:
        if session.status is None:
            if observed.ledger.get(name, {}).get("instance") is not None:
                raise FleetError(f"the session actor of {name} does not answer (its node may be unreachable); "
                                 "not stopping what cannot be pushed", exit_code=EXIT_BLOCKED)
            # never placed: nothing ran, nothing to push
            cluster.kill(self._ray(observed), session.handle, name=name, ns=observed.namespace)
            observed.sessions.pop(name, None)
            return None
        status = cluster.call(self._ray(observed), session.handle.stop, grace, timeout=grace + cluster.CALL_TIMEOUT)
        session.status = status
        return status

    def _log_tail(self, observed: RayObserved, session: Session, status: dict[str, Any] | None) -> str:
        if status is None:
            return ""
        size = int(status.get("log_size") or 0)
        data, _ = cluster.call(self._ray(observed), session.handle.read_log, max(0, size - 16384))
        return data.decode(errors="replace")

    def _remote(self, observed: RayObserved | None = None) -> Remote:
        remote = observed.remote if observed is not None else self._observed_remote
        assert remote is not None
        return remote

    @staticmethod
    def _ray(observed: Observed) -> Any:
        ray = _ray(observed).ray
        assert ray is not None
        return ray

    def _config(self, agent: DesiredAgent) -> SessionConfig:
        placement = self.loaded.fleet.spec.placement
        return SessionConfig(fleet=self.loaded.name, agent=agent.name, remote=self._remote().url,
                             branch=agent.branch, base=agent.base,
                             workdir=placement.workdir or "~/.cache/fleet/ray",
                             push_interval=parse_duration(placement.pushInterval))

    @property
    def _resource(self) -> str:
        return self.loaded.fleet.spec.placement.resource

    def _notes(self, observed: RayObserved) -> list[str]:
        _free, total = observed.slots
        notes = []
        if total == 0:
            notes.append(f"no node of the Ray cluster offers the resource {self.loaded.fleet.spec.placement.resource}; "
                         "sessions wait unplaced (start nodes with --resources, docs/scale-out.md)")
        ended = [n for n in self.ended(observed) if not _kept(observed, n)]
        if ended:
            notes.append(f"sessions ended; their clones are pushed and released (freeing their "
                         f"{self.loaded.fleet.spec.placement.resource}) when this plan is applied: {', '.join(ended)}")
        for name, session in sorted(observed.sessions.items()):
            rec = observed.agents[name].record if name in observed.agents else None
            kept = next((c for c in rec.conditions if c.type == "CloneKept" and c.status == "True"), None) \
                if rec else None
            if kept is not None and session.state in ("exited", "idle"):
                notes.append(f"{name}: {kept.message}")
        return notes

    def _placing_reason(self, observed: RayObserved) -> str:
        free, total = observed.slots
        resource = self.loaded.fleet.spec.placement.resource
        why = "waiting for the Ray cluster to place it"
        if total == 0:
            return f"{why}: no node offers {resource}"
        if free < 1:
            return f"{why}: no free {resource} unit (all {total:g} in use)"
        return f"{why} (or its node does not answer)"




def split_env(agent: DesiredAgent) -> tuple[dict[str, str], dict[str, str]]:
    """The agent's env as (literals, {KEY: VAR} references): a `fromEnv` is resolved on the
    node that runs the session (actor.resolve_secrets), never here, and never sent."""
    literals: dict[str, str] = {}
    refs: dict[str, str] = {}
    for key, value in agent.env.items():
        if isinstance(value, str):
            literals[key] = value
        else:
            refs[key] = value.fromEnv
    return literals, refs


def _ray(observed: Observed) -> RayObserved:
    assert isinstance(observed, RayObserved), "the ray engine acts on its own observation"
    return observed


def _kept(observed: RayObserved, name: str) -> bool:
    rec = observed.agents[name].record if name in observed.agents else None
    return bool(rec and any(c.type == "CloneKept" and c.status == "True" for c in rec.conditions))


def release(observed: RayObserved, name: str, session: Session, *, archive_ref: str | None,
            retention_ref: str | None = None) -> dict[str, Any]:
    """Ask the actor to free its clone (see SessionActor.release), archiving first (to
    `archive_ref` what is at stake, else a retention snapshot to `retention_ref`, on the
    remote); on success the actor is killed."""
    ray = observed.ray
    assert ray is not None, "observed with a cluster connection"
    known = observed.ledger.setdefault(name, {})
    same = session.status is not None and known.get("instance") == session.status.get("instance")
    offset = known.get("log_offset", 0) if same else 0
    if not same and session.status is not None:
        known.update(instance=session.status.get("instance"), log_offset=0)
    saved = cluster.call(ray, session.handle.release, archive_ref, offset, retention_ref)
    append_log(observed, name, saved.get("log") or b"")
    if saved["ok"]:
        cluster.kill(ray, session.handle, name=name, ns=observed.namespace)
        observed.sessions.pop(name, None)
        known["instance"] = None
    observed.save_ledger()
    return saved
