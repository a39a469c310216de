"""One consistent read of everything the planner needs, for one fleet, into the plain
data of observe/model.py (re-exported here: `Observed`, `ObservedAgent`)."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import FleetError
from ..runtimes.pricing import overrides
from ..spec.desired import DesiredAgent
from ..spec.loader import LoadedFleet
from ..store.home import LEGACY, MOVED, home_of, legacy_of
from ..store.memo import Memo
from ..store.promotions import read_promotions
from ..store.records import CREATING_WORKTREE, PRUNING, RUNNING, STARTING_SESSION, SessionRecord, StateStore
from .gitrepo import GIT_WORKERS, GitRepo, Worktree, branch_at_stake
from .gittree import read_env, read_git
from .live import observe_live
from .model import (
    PATH_EMPTY_DIR,
    PATH_MISSING,
    PATH_NON_EMPTY_DIR,
    PATH_NOT_A_DIR,
    Observed,
    ObservedAgent,
    OwnedProcess,
)
from .processes import ProcessTable, owned_processes
from .progress import last_progress
from .stake import TreeFacts

__all__ = ["Observed", "ObservedAgent", "fleet_home", "legacy_home", "observe", "observe_paths", "path_state",
           "state_store", "tracked_legacy"]


def fleet_home(repo: GitRepo) -> Path:
    """`<git common dir>/fleet`: the same for every worktree, out of `git clean`'s reach (store/home.py)."""
    return home_of(repo.common_dir)


def legacy_home(repo: GitRepo) -> Path:
    """`.fleet/` of the main checkout, where older fleets kept their state."""
    return legacy_of(repo.root)


def state_store(repo: GitRepo, fleet: str, *, memo: Memo[Any] | None = None) -> StateStore:
    """The fleet's state store, reading what is not migrated yet from the old home (but never
    a file git tracks there, nor through a symlink: store/home.py `trusted`). `memo`: the
    loop's (store/memo.py)."""
    legacy = legacy_home(repo)
    return StateStore(fleet_home(repo), fleet, legacy=legacy, legacy_tracked=tracked_legacy(repo), memo=memo)


def tracked_legacy(repo: GitRepo) -> frozenset[Path]:
    """The files under the old home `.fleet/` that git tracks: a commit put them there, so they
    are not fleet's state (a pull request could forge records or logs). One git call, only
    when `.fleet/` exists."""
    legacy = legacy_home(repo)
    if not os.path.lexists(legacy):
        return frozenset()
    if not os.path.islink(legacy):
        try:
            names = os.listdir(legacy)
        except OSError:
            names = None
        # only state is read or moved from there (store/home.py MOVED and the lock files); a
        # `.fleet/` holding only agent worktrees (the default root) needs no git call each pass
        if names is not None and not any(n in MOVED or n.endswith((".lock", ".lock.json")) for n in names):
            return frozenset()
    res = read_git(repo.root, "ls-files", "-z", "--", LEGACY)
    if res.returncode != 0:  # cannot tell: trust none of it
        raise FleetError(f"cannot tell which files of {legacy} git tracks: {res.stderr.strip()}",
                         hint="fix the repository (git status), then run the command again")
    return frozenset(repo.root / p for p in res.stdout.split("\0") if p)


def observe(loaded: LoadedFleet, *, inspect_all: bool = False, repo: GitRepo | None = None,
            store: StateStore | None = None, processes: Callable[[], ProcessTable] = ProcessTable) -> Observed:
    """Read git, the state store and processes. Writes nothing.

    `inspect_all` computes what is at stake for every owned worktree (status and
    delete need it); otherwise only for prune candidates, all the planner needs.
    `processes` reads the process table (tests pass one that acts at the moment of a read).
    """
    repo = repo or GitRepo(loaded.repo)  # the engine's, read once per pass: its config is O(agents)
    store = store or state_store(repo, loaded.name)
    root = loaded.worktrees_root
    repo_id = str(repo.common_dir)
    # Only git's processes run beside this thread: the base's rev-parse and the config's marks
    # in a pool, `git worktree list` in read_worktrees' own thread while it reads the admin
    # dirs. Everything Python reads (records, markers, marks files, the process table) is read
    # here, one thing after another: two threads doing small reads each give the interpreter up
    # at every open, and waited for it back (the records took 3x longer beside the tree list).
    # Results are taken in a fixed order, so is any error. What the loop's memo still holds is
    # taken instead of a read: stat calls in Python.
    with ThreadPoolExecutor(max_workers=2) as pool:
        base_exists = pool.submit(repo.ref_exists, loaded.fleet.spec.base)
        config = pool.submit(repo.config_marks) if repo.memo is None else None
        main, linked = repo.worktrees()
        records = store.all()
        # one pass over the process table for liveness, orphans and the prune checks below
        procs = processes()
        obs = Observed(base_exists=base_exists.result())
        if config is not None:
            config.result()  # kept by the handle: branch_marks asks it again
        owners, protected = repo.branch_marks()
    # only an agent's branch can be owned (under the prefix, or a record's): a mark naming any
    # other branch (`main`, a user's) is ignored, so no mark can make fleet delete it
    recorded = {r.branch for r in records.values() if r.branch}
    prefix = loaded.fleet.branch_prefix
    obs.owned_branches = {b for b, f in owners.items() if f == loaded.name and (b.startswith(prefix) or b in recorded)}
    if main is not None and main.branch:
        obs.checked_out[main.branch] = main.path
    for wt in linked:
        if wt.scratch is not None:  # a fleet's delivery scratch tree (act/delivery.py): no agent's, never pruned
            continue
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
        agent.alive = procs.alive(rec.pid, rec.create_time) if rec.phase == RUNNING else False
    for branch in obs.owned_branches:
        name = branch.removeprefix(loaded.fleet.branch_prefix)
        if branch.startswith(loaded.fleet.branch_prefix) and name not in obs.agents:
            obs.agents[name] = ObservedAgent(name)  # a branch left without worktree or record
    for agent in obs.agents.values():  # protect, where it outlives the records
        if agent.worktree is not None and agent.worktree.owner is not None:
            agent.protect_kept["marker"] = agent.worktree.owner.protect
        if (branch := _branch_of(agent, loaded)) in obs.owned_branches:
            agent.protect_kept["branch"] = branch in protected
    observe_paths(obs, loaded.agents, repo.branch_names)
    live = [a.record for a in obs.agents.values() if a.alive and a.record]
    # a live session's own processes, even ones that made themselves a new session
    # (a daemon it started), carry its session id: those are not orphans
    live_ids = {r.session_id for r in live if r.session_id}
    # recorded live sessions are not orphans: skipped without reading their environment
    known = {r.pid: r.create_time or 0.0 for r in live if r.pid}
    owned = [p for p in owned_processes(loaded.name, repo_id, known=known, table=procs)
             if p.session_id not in live_ids
             and not (p.pid in known and abs(p.create_time - known[p.pid]) < 0.05)]
    # exit records are read after the owner variables: a session that ends between the process
    # pass and the read of its variables (gone, so not adopted live) has written its exit record
    # by then, so the ended adoption below sees it. Read before, neither saw the run and it was
    # started a second time. And they are read as the files are now, not as the look found them
    # when it began (StateStore.load_exits).
    for name, ended in store.load_exits(records).items():
        obs.agents[name].exit = ended
    declared = {a.name: a for a in loaded.agents}

    def first(p: OwnedProcess) -> tuple[bool, float]:
        # of several sessions of one agent, the one running the current spec is taken, and
        # of those the oldest: a session's runner starts before anything it starts
        d = declared.get(p.agent)
        return (d is None or p.spec_hash != d.spec_hash, p.create_time)

    for proc in sorted(owned, key=first):
        if proc.session_id and proc.session_id in live_ids:
            continue  # a process of a session adopted just now (a daemon it started)
        if _adopt(obs, proc, declared.get(proc.agent), loaded.name):
            if proc.session_id:
                live_ids.add(proc.session_id)
        else:
            obs.orphans.append(proc)
    obs.orphans.sort(key=lambda p: p.pid)  # the process table's order, as listed before
    for spec_agent in loaded.agents:
        if (seen := obs.agents.get(spec_agent.name)) is not None:
            _adopt_ended(seen, spec_agent)
    prices = overrides(loaded.fleet.spec.budget.prices)
    for agent in obs.agents.values():
        if agent.alive and agent.record is not None:
            admin = agent.worktree.admin_dir if agent.worktree else None
            agent.last_progress = last_progress(agent.record, log=store.log_path(agent.name), admin_dir=admin)
            observe_live(agent, store.log_path(agent.name), prices, store.spend_path(agent.name))
    obs.promoted = frozenset(read_promotions(store.dir))
    desired = {a.name for a in loaded.agents}
    base = loaded.fleet.spec.base
    ours = frozenset([p.pid for p in obs.orphans] + [a.record.pid for a in obs.agents.values()
                                                      if a.alive and a.record and a.record.pid])
    # a declared agent's tree left half removed by an interrupted delete is judged too (its removal is finished)
    candidates = [agent for name, agent in obs.agents.items() if inspect_all or name not in desired
                  or (agent.worktree is not None and agent.worktree.pruning is not None)]
    if not candidates:
        return obs
    table = procs if any(a.worktree is not None for a in candidates) else None
    env = read_env()  # one environment for every git call of the checks, built once
    extra = safe_refs(loaded)
    globs = loaded.fleet.spec.gc.protectIgnored
    workers = ThreadPoolExecutor(max_workers=GIT_WORKERS) if len(candidates) > 1 else None
    try:
        # what lives in each tree (its `git status`, index flags, markers, processes) needs no
        # refs: with many candidates those reads start in the pool at once, while this thread
        # reads the refs, the tips and the one rev-list (the pool is first in, first out, so
        # every tree's read is under way before any check waits for one)
        reads: dict[str, Future[TreeFacts]] = {}
        if workers is not None:
            for agent in candidates:
                if agent.worktree is not None and agent.worktree.pruning is None:
                    reads[agent.name] = workers.submit(repo.tree_facts, agent.worktree, ignore_groups=ours,
                                                       table=table, env=env)
        # refs and the stash list are read once for all candidates, not per worktree
        refs = repo.ref_snapshot(base)

        def owned_of(agent: ObservedAgent) -> str | None:
            # only the agent's own branch, owned by this fleet, is ever deleted (a branch the tree has
            # checked out instead is kept, whoever made it)
            branch = _branch_of(agent, loaded)
            exists = f"refs/heads/{branch}" in refs.facts.ref_set
            return branch if branch in obs.owned_branches and exists else None

        # each candidate's tips (its branch, HEAD and their reflogs) are read once: the one `git
        # rev-list` below and the candidate's own check then judge the same reading
        tips: dict[str, list[str]] = {}
        for agent in candidates:
            agent.branch = owned_of(agent)
            tree = agent.worktree
            tips[agent.name] = repo.tips(agent.branch, tree.head if tree else None,
                                         tree.admin_dir if tree else None, refs.facts)
        if workers is not None:
            # one `git rev-list` over every candidate's tips first: a candidate none of whose tips
            # holds an unmerged commit then needs no `git log` of its own (RefSnapshot.settles)
            refs = repo.with_unmerged(refs, base, tips.values(), extra_safe=extra)

        def inspect(agent: ObservedAgent) -> None:
            if agent.worktree is not None:
                read = reads.get(agent.name)
                agent.at_stake = repo.at_stake(agent.worktree, base, ignore_groups=ours, refs=refs, table=table,
                                               branch=agent.branch, extra_safe=extra, protect_ignored=globs,
                                               tips=tips[agent.name], env=env,
                                               tree=read.result() if read is not None else None)
            elif agent.branch is not None:
                agent.at_stake = branch_at_stake(repo, agent.branch, base, refs=refs, extra_safe=extra,
                                                 tips=tips[agent.name], env=env)

        # each check is a few read-only git processes in its own worktree: run them side by side
        if workers is not None:
            list(workers.map(inspect, candidates))
        else:
            for agent in candidates:
                inspect(agent)
    finally:
        if workers is not None:
            workers.shutdown(cancel_futures=True)
    return obs


def safe_refs(loaded: LoadedFleet) -> tuple[str, ...]:
    """Refs besides the rule's own anchors (observe/stake.py `anchors`) whose commits stay when an
    agent of `loaded` is pruned: the one place such refs are added (a delivery target branch,
    when the fleet delivers to one). A branch the fleet owns is never one, whatever is added."""
    delivery = loaded.fleet.spec.delivery  # docs/delivery.md: what the merge queue landed stays
    return (f"refs/heads/{delivery.into}",) if delivery is not None else ()


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


def _adopt(obs: Observed, proc: OwnedProcess, desired: DesiredAgent | None, fleet: str) -> bool:
    """Take a live session as a declared agent's own when the records do not show it.

    - The agent has a record that shows no live session (fleet died between spawning
      and recording): the process is taken if it runs the current spec, and counted as
      the run the record never counted (`count_unrecorded_run`).
    - The agent has no record at all (lost to `git clean`, a deleted home, a disk):
      the process's owner variables say what it runs, so it is taken whatever its spec
      hash; the planner then treats it like any recorded session (an old spec is
      replaced, or blocked by protect: true), and nothing is started beside it.
    A process of an undeclared agent, or one beside a recorded live session, is not taken.
    """
    if desired is None:
        return False
    agent = obs.agents.get(proc.agent)
    rec = agent.record if agent else None
    if agent is not None and agent.alive:
        return False
    if agent is not None and rec is not None:
        if proc.spec_hash != desired.spec_hash:
            return False
        if proc.pid != rec.pid:  # a run the record never counted (its launch was not recorded)
            count_unrecorded_run(rec, desired)
            rec.started_at = _iso(proc.create_time)
            rec.finished_at, rec.exit_code = None, None
        rec.phase, rec.pid, rec.create_time, rec.reason = RUNNING, proc.pid, proc.create_time, None
        rec.spec_hash, rec.session_id = desired.spec_hash, proc.session_id or rec.session_id
    else:
        agent = agent or obs.agents.setdefault(proc.agent, ObservedAgent(proc.agent))
        agent.record = _recovered(proc, desired, fleet, agent)
    agent.alive = agent.adopted = True
    return True


def _recovered(proc: OwnedProcess, desired: DesiredAgent, fleet: str, agent: ObservedAgent) -> SessionRecord:
    """A record rebuilt from a live session's owner variables and the spec (no record was left)."""
    current = proc.spec_hash == desired.spec_hash
    started = _iso(proc.create_time)
    rec = SessionRecord(
        agent=desired.name, fleet=fleet, phase=RUNNING, tier=desired.tier_name, runtime=desired.tier.runtime,
        model=desired.tier.model, branch=desired.branch,
        worktree=str(agent.worktree.path if agent.worktree else desired.worktree),
        spec_hash=proc.spec_hash, session_spec=desired.session_spec() if current else None,
        pid=proc.pid, create_time=proc.create_time, session_id=proc.session_id or None, started_at=started,
        attempts=1, protect=desired.protect, gates=list(desired.gates) if current else [],
        reason=None)
    rec.set_condition("Ready", "Unknown", "Running", f"pid {proc.pid} (adopted: its record was missing)")
    return rec


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
    count_unrecorded_run(rec, desired)
    rec.phase, rec.pid, rec.create_time, rec.reason = RUNNING, ended.pid, None, None
    rec.session_id = ended.session_id or rec.session_id
    agent.adopted = True


def count_unrecorded_run(rec: SessionRecord, desired: DesiredAgent) -> None:
    """Count a run of `desired`'s current spec that fleet launched but died before recording, as
    `act/lifecycle.py` `started` would have: one more attempt of the same spec (a new spec
    starts over, its gate counters too), its gates still to run. Both adoptions come here, the
    live one and the ended one: which of them the next pass sees depends only on how fast the
    session was, and the count must not. The Ray engine's adoption counts by this too
    (engines/ray/observe.py)."""
    same = rec.spec_hash == desired.spec_hash
    rec.attempts = rec.attempts + 1 if same else 1
    if not same:
        rec.gate_failures, rec.gates_exhausted, rec.last_gate = {}, False, None
    rec.gates, rec.gates_pending, rec.gate_feedback = list(desired.gates), False, None
    rec.spec_hash, rec.session_spec = desired.spec_hash, desired.session_spec()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
