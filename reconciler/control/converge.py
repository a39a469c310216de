"""One reconcile pass: lock, observe, bring records up to date, plan, act (docs/architecture.md).

`fleet apply`, `fleet delete` and the control loop all call `reconcile_once`; `fleet diff`
and `fleet status` call `preview`, the same observe + plan with nothing written. Both
talk to the fleet's engine (engines/base.py) and never ask which one it is.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .. import telemetry
from ..act.branch_marks import migrate_marks
from ..act.lifecycle import read_log_tail, refreshed
from ..act.worktrees import ensure_excluded, keep_protect
from ..engines import engine_for
from ..errors import FleetError
from ..observe.progress import read_transcript
from ..observe.reach import check_base
from ..observe.snapshot import Observed, fleet_home, legacy_home, tracked_legacy
from ..plan.actions import BLOCKED, Plan
from ..plan.planner import plan as make_plan
from ..runtimes.pricing import Price, overrides
from ..spec.loader import LoadedFleet
from ..spec.models import Backoff
from ..store import clock
from ..store.home import migrate
from ..store.records import RUNNING, StateStore

if TYPE_CHECKING:  # imported when acting: `fleet diff` and `fleet status` never load the executor
    from ..engines.base import Engine
    from ..engines.executor import Outcome
    from ..observe.gitrepo import GitRepo
    from ..store.memo import Memo


@dataclass
class Result:
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)
    applied: bool = False

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def gates_failed(self) -> list[Outcome]:
        """Run-gate actions whose gate failed: shown and counted, not failed actions (exit 0)."""
        return [o for o in self.outcomes if o.ok and o.gate_failed]


def preview(loaded: LoadedFleet, *, targets: Iterable[str] = (), archive: bool = False,
            inspect_all: bool = False, engine: Engine | None = None) -> tuple[Observed, Plan]:
    """Observe and plan without writing anything (records are refreshed in memory only)."""
    engine = engine or engine_for(loaded)
    observed = engine.observe(inspect_all=inspect_all, readonly=True)
    refresh_records(engine.store, observed, save=False, backoff=loaded.fleet.spec.restartBackoff,
                    prices=overrides(loaded.fleet.spec.budget.prices))
    plan = make_plan(loaded, observed, targets=targets, archive=archive, now=clock.now())
    return observed, engine.adjust(plan, observed)


def refresh_records(store: StateStore, observed: Observed, *, save: bool, backoff: Backoff,
                    prices: Sequence[Price] = ()) -> None:
    """Fold ended sessions (exit code, cost) and adopted ones into the records."""
    for agent in observed.agents.values():
        if agent.record is None:
            continue
        ended = not agent.alive and agent.record.phase == RUNNING
        # only a run that ended is folded from its log (act/lifecycle.py `refreshed`): a converged
        # fleet's Succeeded agents have nothing to read
        log = store.log_path(agent.name) if ended else None
        new = refreshed(agent, read_log_tail(log) if log else None, backoff,
                        transcript=read_transcript(agent.record) if ended else None, prices=prices)
        if new is not agent.record or agent.adopted:
            agent.record = new
            if save and new is not None:
                store.save(new)
        if save and agent.exit is not None and agent.exit.corrupt is not None:
            store.keep_exit_aside(agent.name)  # after the record says so: a crash in between re-reads it


def sync_declared(loaded: LoadedFleet, store: StateStore, observed: Observed, repo: GitRepo | None = None) -> None:
    """Carry what the spec says about each agent into its record: `protect` must hold even
    after the agent is removed from the file, and an adopted session needs its spec.

    `protect` is also kept where it survives losing the record (`repo` given: the
    worktree's ownership marker and the branch's mark), written only when it changed."""
    for agent in observed.agents.values():
        desired, rec = loaded.agent(agent.name), agent.record
        if desired is None:
            continue
        if repo is not None and any(v != desired.protect for v in agent.protect_kept.values()):
            keep_protect(repo, agent, desired.protect, desired.branch, fleet=loaded.name)
        if rec is None:
            continue
        if rec.protect != desired.protect or agent.adopted:
            rec.protect = desired.protect
            if agent.adopted and rec.spec_hash == desired.spec_hash:
                rec.session_spec = desired.session_spec()
            store.save(rec)


def clear_unblocked(store: StateStore, observed: Observed, plan: Plan) -> None:
    """A `Blocked` condition holds only while the plan still blocks the agent."""
    blocked = {a.agent for a in plan.actions if a.kind == BLOCKED}
    for agent in observed.agents.values():
        rec = agent.record
        if rec is None or agent.name in blocked:
            continue
        if any(c.type == "Blocked" and c.status == "True" for c in rec.conditions):
            rec.clear_condition("Blocked", "Unblocked")
            store.save(rec)


@telemetry.traced_reconcile
def reconcile_once(loaded: LoadedFleet, *, targets: Iterable[str] = (), lock_timeout: float | None = None,
                   confirm: Callable[[Plan], bool] | None = None, on_wait: Callable[[str], None] | None = None,
                   on_step: Callable[[Outcome], None] | None = None, on_plan: Callable[[Plan], None] | None = None,
                   grace: float = 10.0, command: str = "fleet apply", archive: bool = False,
                   planner: Callable[[Observed], Plan] | None = None, inspect_all: bool = False,
                   saved_plan: bool = False, engine: Engine | None = None, memo: Memo[Any] | None = None) -> Result:
    """`planner` replaces the planner: `fleet delete` plans deletions; a saved plan
    (`saved_plan=True`, plan/saved.py) checks that it still holds. `memo`: what the running
    loop remembers between ticks (store/memo.py), for the engine's observation."""
    from ..engines.executor import Executor
    from ..locking.fleet_lock import fleet_lock

    with ExitStack() as looking:
        # the base check, the move of old marks and the observation are one look of the loop's
        # memo (each file's stat taken once, store/memo.py); it is closed before anything is acted
        # on. What is written inside it before the lock is taken (the old home's state, info/exclude,
        # the lock) is stat'ed again once it is held; the marks file `migrate_marks` moves marks
        # into calls `restat` itself
        if memo is not None:
            looking.enter_context(memo.look())
        if engine is None and loaded.fleet.spec.placement.engine == "local":
            engine = engine_for(loaded, memo=memo)  # no connection to open: its repo handle serves the base check too
        # an owned branch as base makes every agent commit look merged (observe/reach.py); checked
        # before an engine connects anywhere
        check_base(loaded, engine.repo if engine is not None else None)
        engine = engine or engine_for(loaded)
        if saved_plan and not engine.supports_saved_plans:
            raise FleetError(f"saved plans are not supported with placement.engine {engine.name} yet",
                             hint="review with `fleet diff FILE`, then run `fleet apply FILE`")
        # an older fleet's state under <main checkout>/.fleet moves to the git common dir first,
        # so this pass and every later one read and lock in one place (store/home.py)
        try:
            set_aside = migrate(legacy_home(engine.repo), fleet_home(engine.repo), tracked_legacy(engine.repo))
        except OSError as exc:
            raise FleetError(f"cannot move fleet's state from {legacy_home(engine.repo)} to {fleet_home(engine.repo)}: "
                             f"{exc}", hint="fix the permissions of both directories; nothing was lost (the move "
                                            "is finished by the next run)") from None
        ensure_excluded(engine.repo, loaded.worktrees_root)
        with fleet_lock(fleet_home(engine.repo), loaded.name, timeout=lock_timeout, command=command, on_wait=on_wait), \
                engine.controller(command=command, timeout=lock_timeout, on_wait=on_wait):
            if memo is not None:
                # what was written before the lock was ours (the state moved just now, or by a
                # `fleet apply` that held it) is stat'ed again: the look began before it
                memo.restat()
            # marks still in the repo config move to the fleet's marks file (act/branch_marks.py)
            migrate_marks(engine.repo, loaded.name)
            observed = engine.observe(inspect_all=inspect_all, readonly=False)
            looking.close()  # what follows writes: the look's stats no longer hold
            engine.store.sweep_temp()
            refresh_records(engine.store, observed, save=True, backoff=loaded.fleet.spec.restartBackoff,
                            prices=overrides(loaded.fleet.spec.budget.prices))
            sync_declared(loaded, engine.store, observed, engine.repo)
            if planner is not None:
                the_plan = planner(observed)
            else:
                now = clock.now()
                the_plan = engine.adjust(make_plan(loaded, observed, targets=targets, archive=archive, now=now),
                                         observed)
            if set_aside:  # a file in both places with different contents: both kept, said once
                the_plan = replace(the_plan, notes=the_plan.notes + tuple(set_aside))
            clear_unblocked(engine.store, observed, the_plan)
            if on_plan:
                on_plan(the_plan)
            if the_plan.has_changes and confirm is not None and not confirm(the_plan):
                return Result(the_plan)
            # after the confirmation, before the actions: what it frees is there for this plan's spawns
            engine.release_ended(observed, the_plan)
            if not the_plan.has_changes:
                return Result(the_plan)
            outcomes = Executor(loaded, engine, observed, grace=grace, on_step=on_step).run(the_plan)
            return Result(the_plan, outcomes, applied=True)
