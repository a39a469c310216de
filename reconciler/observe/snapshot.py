"""One consistent read of everything the planner needs, for one fleet, into the plain
data of observe/model.py (re-exported here: `Observed`, `ObservedAgent`)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from ..spec.desired import DesiredAgent
from ..spec.loader import LoadedFleet
from ..store.records import CREATING_WORKTREE, PRUNING, RUNNING, STARTING_SESSION, SessionRecord, StateStore
from .gitrepo import GIT_WORKERS, GitRepo, Worktree, branch_at_stake
from .model import (
    PATH_EMPTY_DIR,
    PATH_MISSING,
    PATH_NON_EMPTY_DIR,
    PATH_NOT_A_DIR,
    Observed,
    ObservedAgent,
    OwnedProcess,
)
from .processes import ProcessTable, is_alive, owned_processes
from .progress import last_progress

__all__ = ["Observed", "ObservedAgent", "fleet_home", "observe", "observe_paths", "path_state"]


def fleet_home(repo: GitRepo) -> Path:
    return repo.root / ".fleet"


def observe(loaded: LoadedFleet, *, inspect_all: bool = False, repo: GitRepo | None = None,
            store: StateStore | None = None) -> Observed:
    """Read git, the state store and processes. Writes nothing.

    `inspect_all` computes what is at stake for every owned worktree (status and
    delete need it); otherwise only for prune candidates, all the planner needs.
    """
    repo = repo or GitRepo(loaded.repo)  # the engine's, read once per pass: its config is O(agents)
    store = store or StateStore(fleet_home(repo), loaded.name)
    obs = Observed(base_exists=repo.ref_exists(loaded.fleet.spec.base))
    root = (loaded.repo / loaded.fleet.spec.worktrees.root).resolve()
    repo_id = str(repo.common_dir)
    records = store.all()
    obs.owned_branches = {b for b, f in repo.owned_branches().items() if f == loaded.name}
    main, linked = repo.worktrees()
    if main is not None and main.branch:
        obs.checked_out[main.branch] = main.path
    for wt in linked:
        owner = _owner_agent(wt, loaded.name, repo_id, records)
        if owner is not None:
            obs.agents.setdefault(owner, ObservedAgent(owner)).worktree = wt
            continue
        if wt.branch:
            obs.checked_out[wt.branch] = wt.path
        if _is_under(wt.path, root):
            obs.foreign.append(wt)
    for name, rec in records.items():
        agent = obs.agents.setdefault(name, ObservedAgent(name))
        agent.record = rec
        agent.exit = store.load_exit(name)
        agent.alive = is_alive(rec.pid, rec.create_time) if rec.phase == RUNNING else False
    for branch in obs.owned_branches:
        name = branch.removeprefix(loaded.fleet.branch_prefix)
        if branch.startswith(loaded.fleet.branch_prefix) and name not in obs.agents:
            obs.agents[name] = ObservedAgent(name)  # a branch left without worktree or record
    observe_paths(obs, loaded.agents, repo.branch_names)
    live = [a.record for a in obs.agents.values() if a.alive and a.record]
    # a live session's own processes, even ones that made themselves a new session
    # (a daemon it started), carry its session id: those are not orphans
    live_ids = {r.session_id for r in live if r.session_id}
    # recorded live sessions are not orphans: skipped without reading their environment
    known = {r.pid: r.create_time or 0.0 for r in live if r.pid}
    owned = [p for p in owned_processes(loaded.name, repo_id, known=known)
             if p.session_id not in live_ids
             and not (p.pid in known and abs(p.create_time - known[p.pid]) < 0.05)]
    hashes = {a.name: a.spec_hash for a in loaded.agents}
    obs.orphans = [p for p in owned if not _adopt(obs.agents.get(p.agent), p, hashes.get(p.agent))]
    for declared in loaded.agents:
        if (seen := obs.agents.get(declared.name)) is not None:
            _adopt_ended(seen, declared)
    for agent in obs.agents.values():
        if agent.alive and agent.record is not None:
            admin = agent.worktree.admin_dir if agent.worktree else None
            agent.last_progress = last_progress(agent.record, log=store.log_path(agent.name), admin_dir=admin)
    desired = {a.name for a in loaded.agents}
    base = loaded.fleet.spec.base
    ours = frozenset([p.pid for p in obs.orphans] + [a.record.pid for a in obs.agents.values()
                                                      if a.alive and a.record and a.record.pid])
    # a declared agent's tree left half removed by an interrupted delete is judged too (its removal is finished)
    candidates = [agent for name, agent in obs.agents.items() if inspect_all or name not in desired
                  or (agent.worktree is not None and agent.worktree.pruning is not None)]
    # refs, the stash list and every process's cwd are read once for all candidates, not per worktree
    refs = repo.ref_snapshot(base) if candidates else None
    table = ProcessTable() if any(a.worktree is not None for a in candidates) else None

    def inspect(agent: ObservedAgent) -> None:
        if agent.worktree is not None:
            agent.at_stake = repo.at_stake(agent.worktree, base, ignore_groups=ours, refs=refs, table=table)
        elif (branch := _branch_of(agent, loaded)) in obs.owned_branches and repo.branch_exists(branch):
            agent.branch = branch
            agent.at_stake = branch_at_stake(repo, branch, base, refs=refs)

    # each check is a few read-only git processes in its own worktree: run them side by side
    if len(candidates) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=GIT_WORKERS) as pool:
            list(pool.map(inspect, candidates))
    else:
        for agent in candidates:
            inspect(agent)
    return obs


def observe_paths(obs: Observed, agents: Iterable[DesiredAgent], branches: Callable[[], frozenset[str]]) -> None:
    """Fill in what the planner asks about declared agents that have no worktree: what is at
    each one's worktree path, and every branch (`branches()`, one call for the whole plan).
    Reads nothing when every declared agent has its worktree (a converged fleet's pass)."""
    waiting = [a.worktree for a in agents if (o := obs.agents.get(a.name)) is None or o.worktree is None]
    if not waiting:
        return
    obs.paths = {path: path_state(path) for path in waiting}
    obs.branches = branches()


def path_state(path: Path) -> str:
    """What is at `path` (symlinks followed), as a PATH_* of observe/model.py."""
    try:
        if not path.exists():
            return PATH_MISSING
        if not path.is_dir():
            return PATH_NOT_A_DIR
        return PATH_NON_EMPTY_DIR if any(path.iterdir()) else PATH_EMPTY_DIR
    except OSError:  # cannot look inside (permissions): it is not known to be empty
        return PATH_NON_EMPTY_DIR


def _owner_agent(wt: Worktree, fleet: str, repo_id: str, records: dict[str, SessionRecord]) -> str | None:
    """The agent a worktree belongs to, if this fleet owns it.

    The marker says so; failing that, a record of ours that was creating exactly this
    worktree (its intent, recorded before `git worktree add`) proves it when the tree is
    on exactly the record's branch (apply died between `git worktree add` and writing the
    marker) or git never finished making it (locked "initializing": apply and git died
    inside `git worktree add`, maybe before HEAD named the branch). A record that was
    pruning exactly this worktree proves it too once the tree is gone (the removal died
    deleting the admin dir, the marker first).
    """
    if wt.owner is not None:
        return wt.owner.agent if (wt.owner.fleet, wt.owner.repo) == (fleet, repo_id) else None
    for rec in records.values():
        if rec.worktree != str(wt.path):
            continue
        if rec.reason == CREATING_WORKTREE and (rec.branch == wt.branch or wt.lock_reason == "initializing"):
            return rec.agent
        if rec.reason == PRUNING and not wt.exists:
            return rec.agent
    return None


def _branch_of(agent: ObservedAgent, loaded: LoadedFleet) -> str:
    if agent.record is not None and agent.record.branch:
        return agent.record.branch
    return loaded.fleet.branch_prefix + agent.name


def _adopt(agent: ObservedAgent | None, proc: OwnedProcess, desired_hash: str | None) -> bool:
    """Take a live session as the agent's own when fleet died between spawning and recording it:
    the process runs the current spec of a declared agent whose record shows no live session."""
    rec = agent.record if agent else None
    if agent is None or rec is None or agent.alive or desired_hash is None or proc.spec_hash != desired_hash:
        return False
    rec.phase, rec.pid, rec.create_time, rec.reason = RUNNING, proc.pid, proc.create_time, None
    rec.spec_hash, rec.session_id = desired_hash, proc.session_id or rec.session_id
    agent.alive = agent.adopted = True
    return True


def _adopt_ended(agent: ObservedAgent, desired: DesiredAgent) -> None:
    """Take an ended session as the agent's own when fleet died between launching and recording
    it: the record still shows the intent (STARTING_SESSION) and no live session, and an exit
    record of another pid says a session of the current spec ran and ended (the launch deletes
    any older exit record first). Refreshing the record then folds the exit in, so the run is
    not started a second time."""
    rec, ended = agent.record, agent.exit
    if rec is None or ended is None or agent.alive or rec.reason != STARTING_SESSION:
        return
    if ended.pid == rec.pid or ended.spec_hash != desired.spec_hash:
        return
    rec.attempts = rec.attempts + 1 if rec.spec_hash == desired.spec_hash else 1
    rec.phase, rec.pid, rec.create_time, rec.reason = RUNNING, ended.pid, None, None
    rec.spec_hash, rec.session_id = desired.spec_hash, ended.session_id or rec.session_id
    rec.gates, rec.gates_pending = list(desired.gates), False  # its gates still run, as after any run
    agent.adopted = True


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
