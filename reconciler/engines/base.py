"""The one interface every engine implements (docs/architecture.md "Engines").

An engine is where sessions run: `local` (git worktrees and detached processes on this
machine, engines/local.py) or `ray` (actors on a Ray cluster, engines/ray/). The control
pass (control/converge.py), status, logs and delete talk only to this protocol and never
ask which engine they hold. An engine:

- observes its world into the planner's plain `Observed` (`observe`);
- adjusts the planner's plan where placement changes what an action means (`adjust`);
- frees what ended sessions hold before the plan's actions run (`release_ended`);
- supplies the world-touching primitives the shared executor (engines/executor.py)
  calls: create a workspace, prepare and launch a session, stop it, run its gates, prune;
  the executor owns the record lifecycle around them, so both engines record the same;
- fills in the status rows only it knows (dirty, ahead, node) and streams logs.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..act.gates import GateResult
    from ..observe.gitrepo import GitRepo
    from ..observe.snapshot import Observed, ObservedAgent
    from ..plan.actions import Action, Plan
    from ..plan.status import AgentStatus
    from ..spec.desired import DesiredAgent
    from ..spec.loader import LoadedFleet
    from ..spec.models import Gate
    from ..store.records import CannotStart, SessionRecord, StateStore


@dataclass(frozen=True)
class Launched:
    """A session an engine started: what the record keeps of it."""

    session_id: str
    pid: int | None  # None while a remote engine has not placed it yet
    create_time: float | None
    where: str  # for the outcome line: "pid 123, log ..." or "new actor ns/agent ..."
    ready: str  # the Ready condition's message while it runs
    cannot_start: CannotStart | None = None  # known at once: its program did not start


@dataclass(frozen=True)
class Halted:
    """What stopping a session left to record."""

    log_tail: str  # the end of its output, for a stall/deadline reason
    message: str


@dataclass(frozen=True)
class GateRunner:
    """Runs one gate where the agent's work is; `where` is added to the verdict line."""

    run: Callable[[str, Gate], GateResult]
    where: str = ""


@dataclass(frozen=True)
class WorkspaceLost:
    """The agent's workspace is gone before its gates could run (a lost node's clone)."""

    reason: str
    condition: str


class Engine(Protocol):
    name: str
    loaded: LoadedFleet
    repo: GitRepo  # the checkout holding fleet.yaml's repo: the fleet lock and state store live there
    store: StateStore
    supports_saved_plans: bool

    def observe(self, *, inspect_all: bool = False, readonly: bool = True) -> Observed:
        """Read the world into plain data. `readonly` (diff, status) writes nothing of fleet's."""
        ...

    def controller(self, *, command: str, timeout: float | None,
                   on_wait: Callable[[str], None] | None) -> AbstractContextManager[object]:
        """Held (inside the fleet lock) by every pass that acts: a lease where the sessions run, for
        an engine whose sessions several checkouts could drive (ray: engines/ray/lease.py)."""
        ...

    def adjust(self, plan: Plan, observed: Observed) -> Plan:
        """The planner's plan with what this engine's placement changes (identity for local)."""
        ...

    def release_ended(self, observed: Observed, plan: Plan) -> None:
        """Free what ended sessions still hold (a remote clone and its slot), after confirmation;
        agents the plan prunes are left to their prune."""
        ...

    def before_actions(self) -> None:
        """Once per executed plan, before its first action."""
        ...

    def workspace_of(self, agent: DesiredAgent) -> str | None:
        """The agent's workspace path as the record keeps it (None where it is remote)."""
        ...

    def branch_ref(self, agent: DesiredAgent) -> str:
        """The ref of this repository the delivery queue reads the agent's branch from (ray: a copy
        of the branch on spec.remote as the controller merged it, engines/ray/engine.py)."""
        ...

    def create_workspace(self, action: Action, agent: DesiredAgent) -> str:
        ...

    def prepare(self, agent: DesiredAgent, resume: tuple[str, str] | None) -> Any:
        """Everything a start needs, checked: raises FleetError for a bad spec before anything stops."""
        ...

    def launch(self, agent: DesiredAgent, prepared: Any, observed: Observed) -> Launched:
        ...

    def stop_orphan(self, action: Action, observed: Observed, *, grace: float) -> str:
        ...

    def halt(self, action: Action, rec: SessionRecord, observed: Observed, *, grace: float) -> Halted | None:
        """Stop the agent's recorded session; None if there was none to stop."""
        ...

    def gate_runner(self, agent: DesiredAgent, observed: Observed) -> GateRunner | WorkspaceLost:
        ...

    def prune(self, action: Action, obs: ObservedAgent, observed: Observed) -> str:
        """Remove the agent's workspace and branch (refusing with EXIT_BLOCKED if work is at stake)."""
        ...

    def status_rows(self, observed: Observed, rows: list[AgentStatus]) -> list[AgentStatus]:
        ...

    def log_chunks(self, name: str, *, follow: bool, more: Callable[[], bool] | None = None) -> Iterator[bytes]:
        """The session log's bytes as they are written. `follow`: go on while the session runs and,
        where the engine can tell, while `more()` says another run is coming (a resume, a restart)."""
        ...
