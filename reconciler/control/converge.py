"""One reconcile pass: lock, observe, bring records up to date, plan, act.

`fleet apply` and the control loop both call `reconcile_once`; `fleet diff` calls
`preview`, which is the same observe + plan with nothing written.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from typing import TYPE_CHECKING

from .. import telemetry
from ..act.worktrees import ensure_excluded
from ..engines import engine_for
from ..act.lifecycle import read_log_tail, refreshed
from ..observe.snapshot import Observed, fleet_home, observe
from ..observe.gitrepo import GitRepo
from ..plan.actions import Plan
from ..plan.planner import plan as make_plan
from ..spec.loader import LoadedFleet
from ..spec.models import Backoff

if TYPE_CHECKING:  # imported when acting: `fleet diff` and `fleet status` never load the executor
    from ..act.executor import Outcome


@dataclass
class Result:
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)
    applied: bool = False

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def preview(loaded: LoadedFleet, *, targets: Iterable[str] = (), archive: bool = False,
            inspect_all: bool = False) -> tuple[Observed, Plan]:
    """Observe and plan without writing anything (records are refreshed in memory only)."""
    if (engine := engine_for(loaded)) is not None:  # spec.placement: sessions run elsewhere (engines/)
        return engine.preview(targets=targets, archive=archive, inspect_all=inspect_all)
    observed = observe(loaded, inspect_all=inspect_all)
    refresh_records(observed, save=False, backoff=loaded.fleet.spec.restartBackoff)
    return observed, make_plan(loaded, observed, datetime.now(timezone.utc), targets=targets, archive=archive)


def refresh_records(observed: Observed, *, save: bool, backoff: Backoff | None = None) -> None:
    """Fold ended sessions (exit code, cost) and adopted ones into the records."""
    for agent in observed.agents.values():
        if agent.record is None:
            continue
        log = observed.store.log_path(agent.name) if not agent.alive else None
        new = refreshed(agent, read_log_tail(log) if log else None, backoff)
        if new is not agent.record or agent.adopted:
            agent.record = new
            if save and new is not None:
                observed.store.save(new)


def sync_declared(loaded: LoadedFleet, observed: Observed) -> None:
    """Carry what the spec says about each agent into its record: `protect` must hold even
    after the agent is removed from the file, and an adopted session needs its spec."""
    for agent in observed.agents.values():
        desired, rec = loaded.agent(agent.name), agent.record
        if desired is None or rec is None:
            continue
        if rec.protect != desired.protect or agent.adopted:
            rec.protect = desired.protect
            if agent.adopted:
                rec.session_spec = desired.session_spec()
            observed.store.save(rec)


@telemetry.traced_reconcile
def reconcile_once(loaded: LoadedFleet, *, targets: Iterable[str] = (), lock_timeout: float | None = None,
                   confirm: Callable[[Plan], bool] | None = None, on_wait: Callable[[str], None] | None = None,
                   on_step: Callable[[Outcome], None] | None = None, on_plan: Callable[[Plan], None] | None = None,
                   grace: float = 10.0, command: str = "fleet apply", archive: bool = False,
                   planner: Callable[[Observed], Plan] | None = None) -> Result:
    """`planner` replaces the planner (a saved plan checks it still holds, plan/saved.py)."""
    if (engine := engine_for(loaded)) is not None:  # spec.placement: sessions run elsewhere (engines/)
        return engine.reconcile_once(targets=targets, lock_timeout=lock_timeout, confirm=confirm, on_wait=on_wait,
                                     on_step=on_step, on_plan=on_plan, grace=grace, command=command,
                                     archive=archive, planner=planner)
    from ..act.executor import Executor
    from ..locking.fleet_lock import fleet_lock

    repo = GitRepo(loaded.repo)
    ensure_excluded(repo)  # before the lock creates .fleet/, so the checkout never shows it
    with fleet_lock(fleet_home(repo), loaded.name, timeout=lock_timeout, command=command, on_wait=on_wait):
        observed = observe(loaded)
        observed.store.sweep_temp()
        refresh_records(observed, save=True, backoff=loaded.fleet.spec.restartBackoff)
        sync_declared(loaded, observed)
        the_plan = planner(observed) if planner else make_plan(loaded, observed, datetime.now(timezone.utc),
                                                               targets=targets, archive=archive)
        if on_plan:
            on_plan(the_plan)
        if not the_plan.has_changes or (confirm is not None and not confirm(the_plan)):
            return Result(the_plan)
        outcomes = Executor(loaded, observed, grace=grace, on_step=on_step).run(the_plan)
        return Result(the_plan, outcomes, applied=True)
