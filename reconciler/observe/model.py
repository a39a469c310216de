"""Observed state as plain data: what observe found, in the form the planner reads it.

Nothing here talks to git, psutil or the filesystem, and importing this module loads
neither GitPython nor psutil: the planner (plan/planner.py) depends only on these
types. Every fact the planner needs is a field filled by an observer
(observe/snapshot.py for a local fleet, engines/ray/observe.py under Ray):

- `Worktree.exists`: the worktree's directory is there;
- `Observed.paths`: for each declared agent without a worktree, what is at its
  desired worktree path (nothing, an empty directory, a non-empty one, a file);
- `Observed.branches`: every branch, read only when some declared agent has no
  worktree (the only time the planner asks).

`gitrepo.py`, `processes.py` and `snapshot.py` re-export the types they used to define.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store.records import FAILED, RUNNING, SUCCEEDED, ExitRecord, SessionRecord

if TYPE_CHECKING:  # live handles, typed only: the planner never touches them
    from .stake import AtStake

# What is at a declared agent's worktree path when it has no worktree (`Observed.paths`).
PATH_MISSING, PATH_EMPTY_DIR, PATH_NON_EMPTY_DIR, PATH_NOT_A_DIR = "missing", "empty-dir", "non-empty-dir", "not-a-dir"
PATH_STATES = (PATH_MISSING, PATH_EMPTY_DIR, PATH_NON_EMPTY_DIR, PATH_NOT_A_DIR)


@dataclass(frozen=True)
class Owner:
    """A worktree's ownership marker (observe/gitrepo.py `MARKER`)."""

    fleet: str
    repo: str
    agent: str
    branch: str
    protect: bool = False  # the agent's `protect`, kept here too: it must outlive the state store


@dataclass(frozen=True)
class PruneIntent:
    """Written into a worktree's admin dir once its prune passed the last check, right before
    `git worktree remove` (act/worktrees.py); gone with the admin dir when the removal ends.
    Found again, it means the removal was interrupted: what is left is judged against what
    was checked (HEAD) and archived (`archive`, a ref, and the commit it named)."""

    archive: str | None = None
    commit: str | None = None


@dataclass
class Worktree:
    path: Path
    head: str | None
    branch: str | None  # short name, None when detached
    locked: bool = False
    prunable: bool = False  # git's word: the directory is gone
    admin_dir: Path | None = None
    owner: Owner | None = None
    exists: bool = True  # the directory is there (observe checks it; False: deleted by hand)
    lock_reason: str | None = None  # "initializing": `git worktree add` never finished
    pruning: PruneIntent | None = None  # a prune of this tree was interrupted (see PruneIntent)
    scratch: str | None = None  # the fleet whose delivery scratch tree this is (act/delivery.py), not an agent's


@dataclass(frozen=True)
class OwnedProcess:
    """A session leader whose owner variables name this fleet and repo."""

    pid: int
    create_time: float
    agent: str
    spec_hash: str
    session_id: str
    cmdline: str


@dataclass
class ObservedAgent:
    name: str
    record: SessionRecord | None = None
    exit: ExitRecord | None = None
    worktree: Worktree | None = None  # owned by this fleet, for this agent
    alive: bool = False
    at_stake: AtStake | None = None  # filled only for prune candidates
    adopted: bool = False  # a session not yet recorded: live (its owner variables) or ended (its exit record)
    branch: str | None = None  # this fleet's branch for the agent, when it exists without a worktree
    last_progress: float | None = None  # epoch seconds; live sessions only (observe/progress.py)
    # what the running session's current run has spent so far, from its log (observe/live.py);
    # live_usd None with live_tokens set: tokens of a model without a price
    live_usd: float | None = None
    live_tokens: int | None = None
    # `protect` as kept outside the state store, where it survives losing every record:
    # "marker" (the worktree's ownership marker) and "branch" (`branch.<b>.fleetProtect`),
    # each present only where that place exists for this fleet's agent
    protect_kept: dict[str, bool] = field(default_factory=dict)

    @property
    def protected(self) -> bool:
        """protect: true, by the record or by what survives it (an undeclared agent's only word)."""
        return bool(self.record and self.record.protect) or any(self.protect_kept.values())

    @property
    def phase(self) -> str | None:
        """The phase as observed now (a recorded Running session may have ended since)."""
        rec = self.record
        if rec is None:
            return None
        if rec.phase != RUNNING or self.alive:
            return rec.phase
        if self.ended_here:
            assert self.exit is not None
            return SUCCEEDED if self.exit.exit_code == 0 else FAILED
        return FAILED  # no readable exit status: killed, or unknown (`exit.corrupt`)

    @property
    def ended_here(self) -> bool:
        """The exit record is readable and is that of the recorded run."""
        return (self.exit is not None and self.exit.corrupt is None and self.record is not None
                and self.exit.pid == self.record.pid)

    @property
    def exit_code(self) -> int | None:
        if self.ended_here:
            assert self.exit is not None
            return self.exit.exit_code
        return self.record.exit_code if self.record else None


@dataclass(frozen=True)
class BranchFacts:
    """An agent branch against the delivery target and base (observe/delivery.py)."""

    tip: str  # the branch's commit
    in_target: bool  # the tip is reachable from the target: nothing left to deliver
    ahead: int  # commits on the branch the target lacks
    behind_target: int  # commits on the target the branch lacks
    behind_base: int  # commits on base the branch lacks (its fork point is stale)
    changed: tuple[str, ...]  # files the branch changes since its merge base with the target
    landed: bool = False  # the record's pending result (an interrupted delivery) is in the target
    remote_tip: str | None = None  # refs/remotes/<push remote>/<branch>, with pullRequest.perAgent only


@dataclass(frozen=True)
class DeliveryFacts:
    """What the merge queue's planning reads (plan/delivery.py); filled only with spec.delivery."""

    into: str
    target_tip: str | None  # None: the target branch does not exist yet
    base_tip: str | None
    checked_out: str | None = None  # a worktree that has the target checked out (update-ref would strand it)
    remote_tip: str | None = None  # refs/remotes/<push remote>/<into>, when push is declared
    branches: dict[str, BranchFacts] = field(default_factory=dict)  # agent -> facts (branches that exist)


@dataclass
class Observed:
    """Everything the planner reads about one fleet's world: plain data, no live handles
    (the repository and the state store are the engine's, engines/base.py)."""

    base_exists: bool
    agents: dict[str, ObservedAgent] = field(default_factory=dict)
    foreign: list[Worktree] = field(default_factory=list)  # under our root, not ours
    orphans: list[OwnedProcess] = field(default_factory=list)
    owned_branches: set[str] = field(default_factory=set)  # branches this fleet created
    checked_out: dict[str, Path] = field(default_factory=dict)  # branch -> worktree not ours using it
    # every branch (local, or the remote's under Ray); read only when some declared agent
    # has no worktree, so a converged fleet's pass runs no `git for-each-ref`
    branches: frozenset[str] = field(default=frozenset(), repr=False)
    # desired worktree path -> PATH_* for each declared agent without a worktree; a path
    # not listed was not observed and counts as PATH_MISSING
    paths: dict[Path, str] = field(default_factory=dict, repr=False)
    # forEach groups released from their pilot by `fleet promote GROUP` (store/promotions.py)
    promoted: frozenset[str] = frozenset()
    delivery: DeliveryFacts | None = None  # spec.delivery declared and observed (observe/delivery.py)

    def running(self) -> list[ObservedAgent]:
        return [a for a in self.agents.values() if a.alive]

    def path_state(self, path: Path) -> str:
        return self.paths.get(path, PATH_MISSING)


@dataclass
class Packet:
    """A review packet (observe/review.py gathers it; plan/review.py renders it)."""

    agent: str
    fleet: str
    branch: str
    against: str  # the delivery target (or base) the diff is against
    phase: str | None
    final_message: str | None
    commits: list[str] = field(default_factory=list)  # "sha subject", oldest first
    diffstat: str = ""
    gates: dict[str, Any] = field(default_factory=dict)  # the GatesPassed condition and the last gate run
    cost_usd: float = 0.0
    conditions: list[dict[str, Any]] = field(default_factory=list)
    delivery: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
