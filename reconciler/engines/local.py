"""The local engine (the default): a git worktree per agent and detached processes on this machine.

Observation is observe/snapshot.py; the world-touching steps are act/ (worktrees,
sessions, archive, gates). The record lifecycle around each step is the shared
executor's (engines/executor.py), as for every engine.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import telemetry
from ..act.lifecycle import read_log_tail
from ..act.worktrees import create_worktree, ensure_excluded, remove_worktree
from ..errors import FleetError
from ..observe.delivery import observe_delivery
from ..observe.gitrepo import GitRepo
from ..observe.processes import is_alive
from ..observe.snapshot import Observed, ObservedAgent, observe, safe_refs, state_store
from ..plan.actions import Action, Plan
from ..spec.desired import DesiredAgent
from ..spec.durations import parse_duration
from ..spec.loader import LoadedFleet
from ..store import clock
from ..store.memo import Memo
from ..store.records import SessionRecord
from .base import GateRunner, Halted, Launched, WorkspaceLost

if TYPE_CHECKING:  # what only acting and `fleet status` need is imported there: `fleet diff` loads none of it
    from ..act import sessions
    from ..plan.status import AgentStatus


class LocalEngine:
    name = "local"
    supports_saved_plans = True

    def __init__(self, loaded: LoadedFleet, *, memo: Memo[Any] | None = None) -> None:
        self.loaded = loaded
        self.repo = GitRepo(loaded.repo, memo=memo)
        self.store = state_store(self.repo, loaded.name, memo=memo)

    # -- observe and plan ------------------------------------------------------------------

    def observe(self, *, inspect_all: bool = False, readonly: bool = True) -> Observed:
        observed = observe(self.loaded, inspect_all=inspect_all, repo=self.repo, store=self.store)
        observed.delivery = observe_delivery(self.loaded, self.repo, observed, self.branch_ref)
        return observed

    def controller(self, *, command: str, timeout: float | None,
                   on_wait: Callable[[str], None] | None) -> AbstractContextManager[object]:
        return nullcontext()  # the fleet lock (a file in this repo) is the only controller lock a local fleet needs

    def adjust(self, plan: Plan, observed: Observed) -> Plan:
        return plan

    def release_ended(self, observed: Observed, plan: Plan) -> None:
        """An ended local session holds nothing (its worktree is its agent's). What every pass
        (apply, delete, the loop) lets go of here: retention archives (a prune with nothing at
        stake keeps one) older than gc.archiveRetention."""
        from ..act.restore import drop, prunable

        for archive, _why in prunable(self.repo, self.loaded.name, base=self.loaded.fleet.spec.base, older_than=None,
                                      retention=parse_duration(self.loaded.fleet.spec.gc.archiveRetention),
                                      now=clock.now()):
            drop(self.repo, archive)

    # -- the executor's steps --------------------------------------------------------------

    def before_actions(self) -> None:
        ensure_excluded(self.repo, self.loaded.worktrees_root)
        if self.loaded.fleet.spec.locks:  # `fleet lock` in a session reads the slot counts from here
            from ..locking.slots import write_lock_table  # here: filelock (and asyncio) only when acting

            write_lock_table(self.store.home / "locks",
                             {name: lock.slots for name, lock in self.loaded.fleet.spec.locks.items()})

    def workspace_of(self, agent: DesiredAgent) -> str | None:
        return str(agent.worktree)

    def branch_ref(self, agent: DesiredAgent) -> str:
        return f"refs/heads/{agent.branch}"

    def create_workspace(self, action: Action, agent: DesiredAgent) -> str:
        branch = action.details.get("branch") or agent.branch  # a repair: the branch the tree had
        path = create_worktree(self.repo, agent, fleet=self.loaded.name, repair=action.details.get("repair"),
                               branch=branch)
        return f"worktree {path} on {branch}"

    def prepare(self, agent: DesiredAgent, resume: tuple[str, str] | None) -> sessions.Launch:
        from ..act import sessions

        return sessions.prepare(agent, fleet=self.loaded.name, repo_id=str(self.repo.common_dir),
                                lock_dir=self.store.home / "locks", resume=resume,
                                extra_env=telemetry.session_env(self.loaded, agent))

    def launch(self, agent: DesiredAgent, prepared: object, observed: Observed) -> Launched:
        from ..act import sessions

        assert isinstance(prepared, sessions.Launch)
        log = self.store.log_path(agent.name)
        spend = self.store.spend_path(agent.name) if agent.tier.runtime == "claude" else None
        started = sessions.launch(prepared, log=log, exit_file=self.store.exit_path(agent.name), spend_file=spend)
        return Launched(session_id=started.session_id, pid=started.pid, create_time=started.create_time,
                        where=f"pid {started.pid}, log {log}", ready=f"pid {started.pid}",
                        cannot_start=started.cannot_start)

    def stop_orphan(self, action: Action, observed: Observed, *, grace: float) -> str:
        from ..act import sessions

        orphan = next(p for p in observed.orphans if p.pid == action.details["pid"])
        sessions.stop(orphan.pid, orphan.create_time, grace=grace)
        return f"stopped orphan pid {orphan.pid}"

    def halt(self, action: Action, rec: SessionRecord, observed: Observed, *, grace: float) -> Halted | None:
        from ..act import sessions

        if rec.pid is None:
            return None
        sessions.stop(rec.pid, rec.create_time, grace=grace)
        return Halted(log_tail=read_log_tail(self.store.log_path(rec.agent)) or "", message=f"stopped pid {rec.pid}")

    def gate_runner(self, agent: DesiredAgent, observed: Observed) -> GateRunner | WorkspaceLost:
        from ..act.gates import run_gate

        log = self.store.log_path(agent.name)
        return GateRunner(lambda name, gate: run_gate(name, gate, agent, log=log))

    def prune(self, action: Action, obs: ObservedAgent, observed: Observed) -> str:
        wt, branch = obs.worktree, action.details.get("branch")
        if wt is None and branch is None:
            return "removed the state record"
        archived = bool(action.details.get("archive"))
        gc = self.loaded.fleet.spec.gc
        saved = remove_worktree(self.repo, wt, branch, base=self.loaded.fleet.spec.base, fleet=self.loaded.name,
                                agent=action.agent, archived=archived, protect=obs.protected,
                                extra_safe=safe_refs(self.loaded), protect_ignored=gc.protectIgnored)
        note = ""
        if saved is not None and archived:
            from ..act.archive import restore_hint

            note = f"; archived to {saved.ref} ({restore_hint(saved, branch, self.loaded.path)})"
        elif saved is not None:
            note = f"; kept {saved.ref} for {gc.archiveRetention} (nothing was at stake)"
        if kept := action.details.get("keptBranch"):
            note += f"; kept branch {kept} (not the fleet's)"
        return f"pruned {wt.path if wt else 'branch'} {branch or ''}{note}".replace("  ", " ")

    # -- views -----------------------------------------------------------------------------

    def status_rows(self, observed: Observed, rows: list[AgentStatus]) -> list[AgentStatus]:
        """Dirty files and commits ahead of base, from git in each worktree (side by side)."""
        trees = {n: a.worktree for n, a in observed.agents.items() if a.worktree is not None}
        counts = dict(zip(trees, self.repo.tree_counts(list(trees.values()), self.loaded.fleet.spec.base), strict=True))
        return [replace(row, dirty=counts[row.agent][0], ahead=counts[row.agent][1]) if row.agent in counts else row
                for row in rows]

    def log_chunks(self, name: str, *, follow: bool, more: Callable[[], bool] | None = None) -> Iterator[bytes]:
        path = self.store.log_path(name)
        if not path.exists():
            known = ", ".join(a.name for a in self.loaded.agents)
            raise FleetError(f"no log for agent {name!r} in fleet {self.loaded.name}",
                             hint=f"agents: {known}" if self.loaded.agent(name) is None else "it has not run yet")
        with path.open("rb") as f:
            yield f.read()
            next_ask = 0.0
            while follow:
                data = f.read()
                if data:
                    yield data
                    continue
                rec = self.store.load(name)
                if not (rec and is_alive(rec.pid, rec.create_time)):
                    # ended: stop unless another run is coming (asked at most once a second: it plans)
                    if more is None:
                        yield f.read()
                        break
                    if time.monotonic() >= next_ask:
                        if not more():
                            yield f.read()
                            break
                        next_ask = time.monotonic() + 1.0
                time.sleep(0.2)
