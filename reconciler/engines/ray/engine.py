"""The ray engine: the same reconcile pass as reconcile.py, with observation and execution on
a Ray cluster (docs/scale-out.md).

Planning is the planner's: caps, budgets, restart policy and backoff, gates, drift and
the prune rules are exactly those of a local fleet. What differs is what an action is
carried out on (executor.py), and one step between recording ended sessions and
planning: an ended session's actor is released, its clone pushed (or archived) and
deleted, so the cluster slot it held is free for the sessions this pass starts.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ...act.archive import archive_ref
from ...act.worktrees import ensure_excluded
from ...errors import EXIT_OK, FleetError
from ...locking.fleet_lock import fleet_lock
from ...observe.gitrepo import GitRepo
from ...observe.snapshot import fleet_home
from ...plan.actions import CREATE_WORKTREE, Plan
from ...plan.planner import plan as make_plan
from ...control.converge import Result, refresh_records, sync_declared
from ...spec.loader import LoadedFleet
from ...store.records import RUNNING, StateStore
from . import cluster
from .observe import RayObserved, node_label, observe, read_json

if TYPE_CHECKING:
    from ...act.executor import Outcome
    from .executor import RayExecutor


class RayEngine:
    name = "ray"

    def __init__(self, loaded: LoadedFleet) -> None:
        self.loaded = loaded

    def observe(self, *, inspect_all: bool = False, readonly: bool = False) -> RayObserved:
        return observe(self.loaded, inspect_all=inspect_all, readonly=readonly)

    def executor(self, observed: RayObserved, *, grace: float = 10.0,
                 on_step: Callable[[Outcome], None] | None = None) -> RayExecutor:
        from .executor import RayExecutor  # acting only: `fleet status` and `fleet diff` never load it

        return RayExecutor(self.loaded, observed, grace=grace, on_step=on_step)

    def plan(self, observed: RayObserved, *, targets: Iterable[str] = (), archive: bool = False) -> Plan:
        """The planner's plan, with `create-worktree` meaning "create the branch on the remote"."""
        base = make_plan(self.loaded, observed, targets=targets, archive=archive)
        assert observed.remote is not None
        actions = []
        for action in base.actions:
            if action.kind == CREATE_WORKTREE:
                branch = action.details.get("branch")
                if branch in observed.remote.heads:
                    continue  # the branch is there: sessions clone it on their node
                action = replace(action, reason=f"branch {branch} from {self.loaded.fleet.spec.base} on the remote "
                                                f"(sessions clone it on their node)",
                                 details={"branch": branch, "remote": observed.remote.url})
            actions.append(action)
        return Plan(fleet=base.fleet, actions=tuple(actions), notes=base.notes + tuple(self._notes(observed)))

    def preview(self, *, targets: Iterable[str] = (), archive: bool = False,
                inspect_all: bool = False) -> tuple[RayObserved, Plan]:
        observed = self.observe(inspect_all=inspect_all, readonly=True)
        refresh_records(observed, save=False, backoff=self.loaded.fleet.spec.restartBackoff)
        return observed, self.plan(observed, targets=targets, archive=archive)

    def reconcile_once(self, *, targets: Iterable[str] = (), lock_timeout: float | None = None,
                       confirm: Callable[[Plan], bool] | None = None, on_wait: Callable[[str], None] | None = None,
                       on_step: Callable[[Outcome], None] | None = None,
                       on_plan: Callable[[Plan], None] | None = None, grace: float = 10.0,
                       command: str = "fleet apply", archive: bool = False,
                       planner: Callable[[Any], Plan] | None = None) -> Result:
        if planner is not None:
            raise FleetError("saved plans are not supported with placement.engine ray yet",
                             hint="review with `fleet diff FILE`, then run `fleet apply FILE`")
        repo = GitRepo(self.loaded.repo)
        ensure_excluded(repo)
        with fleet_lock(fleet_home(repo), self.loaded.name, timeout=lock_timeout, command=command, on_wait=on_wait):
            observed = self.observe()
            observed.store.sweep_temp()
            refresh_records(observed, save=True, backoff=self.loaded.fleet.spec.restartBackoff)
            sync_declared(self.loaded, observed)
            the_plan = self.plan(observed, targets=targets, archive=archive)
            if on_plan:
                on_plan(the_plan)
            if the_plan.has_changes and confirm is not None and not confirm(the_plan):
                return Result(the_plan)
            # after the confirmation, before the actions: the slots it frees are there for this plan's spawns
            self.release_ended(observed)
            if not the_plan.has_changes:
                return Result(the_plan)
            outcomes = self.executor(observed, grace=grace, on_step=on_step).run(the_plan)
            return Result(the_plan, outcomes, applied=True)

    def release_ended(self, observed: RayObserved) -> None:
        """Free the clone and slot of every session that has ended and whose record is up to date.

        What is not on the remote is pushed, or archived under refs/fleet/archive/... on the
        remote; if neither works the actor and its clone stay (condition CloneKept) and a
        restart runs in that clone.
        """
        from .executor import release

        for name in self.ended(observed):
            session = observed.sessions[name]
            rec = observed.agents[name].record if name in observed.agents else None
            ref = archive_ref(self.loaded.name, name)
            node = session.node
            try:
                saved = release(observed, name, session, archive_ref=ref)
            except FleetError as exc:
                saved = {"ok": False, "refused": exc.message, "archived": None}
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
            observed.store.save(rec)

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

    def status_rows(self, observed: RayObserved, rows: list[Any]) -> list[Any]:
        """Fill in what only the actors know: node, clone, dirty, ahead, pid; placing sessions are Pending."""
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

    def logs(self, name: str, *, follow: bool) -> int:
        """The local copy of the session's output, then what its node has beyond it (-f: until it ends)."""
        repo = GitRepo(self.loaded.repo)
        store = StateStore(fleet_home(repo), self.loaded.name)
        path = store.log_path(name)
        try:
            ray = cluster.connect(self.loaded)
        except FleetError as exc:
            if not path.exists():
                raise
            sys.stdout.buffer.write(path.read_bytes())  # what was copied here is still worth seeing
            sys.stdout.flush()
            print(f"fleet: only the copy under .fleet/logs; the node's log is unreachable: {exc.message}",
                  file=sys.stderr)
            return EXIT_OK
        handles = cluster.sessions(ray, cluster.namespace(self.loaded))
        if not path.exists() and name not in handles:
            known = ", ".join(a.name for a in self.loaded.agents)
            raise FleetError(f"no log for agent {name!r} in fleet {self.loaded.name}",
                             hint=f"agents: {known}" if self.loaded.agent(name) is None else "it has not run yet")
        if path.exists():
            sys.stdout.buffer.write(path.read_bytes())
            sys.stdout.flush()
        if name not in handles:
            return EXIT_OK
        known = read_json(store.home / "ray" / self.loaded.name / "sessions.json").get(name, {})
        handle = handles[name]
        probe = cluster.probe(ray, {name: handle}).get(name)
        if probe is None or probe.status is None:
            return EXIT_OK
        same = known.get("instance") == probe.status.get("instance")
        offset = known.get("log_offset", 0) if same and path.exists() else 0
        while True:
            try:
                data, _size = cluster.call(ray, handle.read_log, offset)
                status = cluster.call(ray, handle.status) if follow else None
            except FleetError:
                return EXIT_OK  # released or lost meanwhile: what was copied is all there is
            if data:
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
                offset += len(data)
            if not follow or (status is not None and status["state"] not in ("preparing", "running") and not data):
                return EXIT_OK
            time.sleep(0.5)

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


def _kept(observed: RayObserved, name: str) -> bool:
    rec = observed.agents[name].record if name in observed.agents else None
    return bool(rec and any(c.type == "CloneKept" and c.status == "True" for c in rec.conditions))
