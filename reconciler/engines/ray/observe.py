"""Observed state under ray: the fleet's named actors, their status, and the remote's branches.

Builds the same `Observed` the planner reads for a local fleet, so caps, budgets,
backoff, gates, drift and the prune rules are the planner's, unchanged:

- a session is alive while its actor runs it, or while the actor waits to be placed
  (it holds or wants a cluster slot, so it counts against the caps);
- a recorded Running session whose actor is gone (its node was lost, or it was killed)
  ended without an exit status: Failed, restarted per policy from its pushed branch;
- a branch is the fleet's if the remote has its owner ref, and exists if the remote has
  it (`Observed.branches` are the remote's heads); what a prune would lose is what the
  branch has beyond base plus what the clone on its node has not pushed.

The driver keeps, besides the state store, one small file per fleet,
`.fleet/ray/<fleet>/sessions.json`: per agent the run it started, the node it ran on and
how much of the node's log it has copied to `.fleet/logs/<fleet>/<agent>.log`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from ...observe.gitrepo import GitRepo
from ...observe.live import observe_live
from ...observe.processes import OwnedProcess
from ...observe.snapshot import Observed, ObservedAgent, count_unrecorded_run, fleet_home, observe_paths
from ...observe.snapshot import state_store as open_store
from ...observe.stake import IN_PROGRESS, AtStake, TreeFacts, judge
from ...runtimes.pricing import overrides
from ...spec.desired import DesiredAgent
from ...spec.loader import LoadedFleet
from ...store.records import RUNNING, CannotStart, ExitRecord, SessionRecord, StateStore, write_json_atomic
from . import cluster
from .lease import MirroredStore, control_actor
from .remote import Remote


@dataclass
class Session:
    """One actor as observed: `status` is None while it is not placed (or not answering)."""

    handle: Any
    status: dict[str, Any] | None

    @property
    def state(self) -> str:
        return self.status["state"] if self.status else "placing"

    @property
    def node(self) -> str | None:
        return node_label(self.status) if self.status else None


@dataclass
class RayObserved(Observed):
    """The planner's Observed plus what only the ray engine acts on: the remote, the actors
    (live handles), the driver's ledger of copied logs."""

    store: StateStore | None = None  # the driver's state store: the ledger and log copies live beside it
    remote: Remote | None = None
    sessions: dict[str, Session] = field(default_factory=dict)  # agent -> its actor
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)  # sessions.json
    ray: ModuleType | None = None
    namespace: str = ""
    slots: tuple[float, float] = (0.0, 0.0)  # (free, total) units of the fleet's resource

    @property
    def state_store(self) -> StateStore:
        assert self.store is not None, "set by observe()"
        return self.store

    def ledger_path(self) -> Path:
        return self.state_store.home / "ray" / self.state_store.fleet / "sessions.json"

    def save_ledger(self) -> None:
        write_json_atomic(self.ledger_path(), self.ledger)
        if isinstance(self.store, MirroredStore):  # the runs go to the cluster too, for the next controller
            self.store.save_runs(self.ledger)


def node_label(status: dict[str, Any]) -> str:
    return f"{status['node_ip']}/{status['node_id'][:8]}"


def observe(loaded: LoadedFleet, *, inspect_all: bool = False, readonly: bool = True, repo: GitRepo | None = None,
            store: StateStore | None = None) -> RayObserved:
    """Read the remote (into the fetch cache), the state store and the actors.

    `readonly` (status, diff) writes nothing but the fetch cache; otherwise (apply,
    delete, the loop, all under the fleet lock) the nodes' new log output is copied to
    the local session logs, so results and costs are read as for a local session.
    """
    ray = cluster.connect(loaded)
    repo = repo or GitRepo(loaded.repo)
    home = fleet_home(repo)
    remote = Remote.of(loaded, fleet_home=home, objects=repo.common_dir / "objects")
    remote.merging = not readonly  # a controller moves branches to their newest attempt (remote.py "Fencing")
    remote.refresh(strict=not readonly)
    spec = loaded.fleet.spec
    obs = RayObserved(store=store or open_store(repo, loaded.name), base_exists=remote.resolve(spec.base) is not None,
                      remote=remote, ray=ray, namespace=cluster.namespace(loaded))
    obs.owned_branches = set(remote.owned)
    obs.ledger = read_json(obs.ledger_path())
    obs.slots = cluster.free_slots(ray, spec.placement.resource)
    for name, rec in obs.state_store.all().items():
        obs.agents[name] = ObservedAgent(name, record=rec)
    probes = cluster.probe(ray, cluster.sessions(ray, obs.namespace))
    obs.sessions = {name: Session(p.handle, p.status) for name, p in probes.items()}
    declared = {a.name: a for a in loaded.agents}
    for name, session in obs.sessions.items():
        agent = obs.agents.setdefault(name, ObservedAgent(name))
        _read_session(obs, agent, session, declared.get(name))
    prefix = loaded.fleet.branch_prefix
    for branch in remote.owned:
        name = branch.removeprefix(prefix)
        if branch.startswith(prefix) and name not in obs.agents:
            obs.agents[name] = ObservedAgent(name)  # a branch left without record or actor
    # no agent has a local worktree here: the planner's checks of each desired path (as for a
    # local fleet) and "does the branch exist" asked of the remote's heads
    observe_paths(obs, loaded.agents, lambda: frozenset(remote.heads))
    desired = set(declared)
    for name, agent in obs.agents.items():
        if agent.alive and (status := obs.sessions[name].status) is not None:
            agent.last_progress = status.get("last_progress")
        if inspect_all or name not in desired:
            agent.at_stake, agent.branch = _at_stake(obs, agent, loaded)
    if not readonly:
        sync_logs(obs)
    # live spend from the copy of each session's log here (as fresh as this pass made it): the
    # budgets and per-run caps act on ray sessions by the rule they follow for local ones
    prices = overrides(spec.budget.prices)
    for name, agent in obs.agents.items():
        observe_live(agent, obs.state_store.log_path(name), prices)
    return obs


OFFLINE_NOTE = ("not connected: this plan is made from local state only (the session records and the last "
                "fetch of spec.remote on this machine; sessions are taken to be as last recorded). "
                "`fleet diff --connect` connects to the Ray cluster and fetches spec.remote to plan against the "
                "live sessions")


def observe_offline(loaded: LoadedFleet, *, repo: GitRepo, store: StateStore) -> RayObserved:
    """What `fleet diff` of a ray fleet plans from without --connect: the state store and the
    fetch cache as they are on this machine. No connection to the cluster or the remote
    (their addresses come from the file, which may be an untrusted pull request's), and no
    write: a recorded Running session is taken to be running still."""
    home = fleet_home(repo)
    remote = Remote.of(loaded, fleet_home=home, objects=None, resolve=False)
    remote.read_cache()
    spec = loaded.fleet.spec
    cached = (remote.cache / "HEAD").is_file() and remote.resolve(spec.base) is not None
    obs = RayObserved(store=store, base_exists=cached or repo.ref_exists(spec.base), remote=remote,
                      namespace=cluster.namespace(loaded))
    obs.owned_branches = set(remote.owned)
    obs.ledger = read_json(obs.ledger_path())
    for name, rec in store.all().items():
        obs.agents[name] = ObservedAgent(name, record=rec, alive=rec.phase == RUNNING)
    prefix = loaded.fleet.branch_prefix
    for branch in remote.owned:
        name = branch.removeprefix(prefix)
        if branch.startswith(prefix) and name not in obs.agents:
            obs.agents[name] = ObservedAgent(name)
    observe_paths(obs, loaded.agents, lambda: frozenset(remote.heads))
    desired = {a.name for a in loaded.agents}
    for name, agent in obs.agents.items():
        if name not in desired:
            agent.at_stake, agent.branch = _at_stake(obs, agent, loaded)
    return obs


def _read_session(obs: RayObserved, agent: ObservedAgent, session: Session, desired: DesiredAgent | None) -> None:
    """Liveness and exit of the agent's session from its actor (see the module docstring)."""
    rec, status = agent.record, session.status
    desired_hash = desired.spec_hash if desired is not None else None
    known = obs.ledger.setdefault(agent.name, {})
    if status is None:  # not placed yet, or its node does not answer: it holds (or wants) a slot
        agent.alive = True
        if (rec is None or rec.phase != RUNNING) and desired is not None:
            _adopt(agent, desired, status, fleet=obs.state_store.fleet)
        return
    ours = status.get("run_id") is not None and status.get("run_id") == known.get("run_id")
    if status["state"] in ("preparing", "running"):
        if ours and rec is not None and rec.phase == RUNNING:
            agent.alive, rec.pid = True, status.get("pid")
        elif desired is not None and status.get("spec_hash") == desired_hash:
            # fleet died between starting it and recording it
            _adopt(agent, desired, status, fleet=obs.state_store.fleet)
            known["run_id"] = status.get("run_id")
        elif desired_hash is None:
            agent.alive = True  # an undeclared agent's session: the planner stops and prunes it
        else:  # a run of another spec that the records do not know: stopped first, like a local orphan
            obs.orphans.append(OwnedProcess(
                pid=status.get("pid") or 0, create_time=0.0, agent=agent.name, spec_hash=status.get("spec_hash") or "",
                session_id=status.get("session_id") or "",
                cmdline=f"ray actor {obs.namespace}/{agent.name} on node {node_label(status)}"))
        return
    if ours and status["state"] == "exited" and status.get("exit_code") is not None and rec is not None:
        rec.pid = status.get("pid") or rec.pid or 0  # the exit must name the recorded run
        agent.exit = ExitRecord(pid=rec.pid, exit_code=int(status["exit_code"]),
                                finished_at=status.get("finished_at") or "",
                                cannot_start=CannotStart.from_json(status.get("cannot_start")))


def _adopt(agent: ObservedAgent, desired: DesiredAgent, status: dict[str, Any] | None, *, fleet: str) -> None:
    """A session fleet started but did not record (it died in between): taken as the agent's
    run and counted as the local engine counts such a run (`count_unrecorded_run`: one more
    attempt of this spec, its gates still to run), so an adopted run is the same number of
    attempts on either engine."""
    rec = agent.record or SessionRecord(agent=agent.name, fleet=fleet, tier=desired.tier_name,
                                        runtime=desired.tier.runtime, model=desired.tier.model, branch=desired.branch)
    session_id = status.get("session_id") if status is not None else None
    # a record already running this very session (a new checkout taking the fleet over, its
    # ledger not yet naming the run) counts nothing again: the run was counted when it started
    if not (rec.phase == RUNNING and session_id and session_id == rec.session_id):
        count_unrecorded_run(rec, desired)
    rec.phase, rec.reason, rec.spec_hash = RUNNING, None, desired.spec_hash
    if status is not None:
        rec.pid, rec.session_id = status.get("pid"), status.get("session_id") or rec.session_id
    agent.record, agent.alive, agent.adopted = rec, True, True


def delivered_into(loaded: LoadedFleet) -> tuple[str, ...]:
    """The delivery target on the remote (pushed there by the queue): a commit in it is safe to prune."""
    delivery = loaded.fleet.spec.delivery
    return (f"refs/heads/{delivery.into}",) if delivery is not None and delivery.push is not None else ()


def _at_stake(obs: RayObserved, agent: ObservedAgent, loaded: LoadedFleet) -> tuple[AtStake | None, str | None]:
    """What pruning the agent would lose: its branch beyond base, and what only its clone holds
    (judged by the rules of a local prune, observe/stake.py)."""
    assert obs.remote is not None
    rec = agent.record
    branch = rec.branch if rec is not None and rec.branch else loaded.fleet.branch_prefix + agent.name
    owned = branch if branch in obs.remote.owned and branch in obs.remote.heads else None
    session = obs.sessions.get(agent.name)
    status = session.status if session else None
    if owned is None and status is None:
        return None, None
    commits = obs.remote.unreachable(obs.remote.heads[owned], loaded.fleet.spec.base, delivered_into(loaded)) \
        if owned is not None else []
    return judge(agent_facts(commits, status)), owned


_MARKER = {op: marker for marker, op in IN_PROGRESS.items()}
_FACTS = {f.name for f in fields(TreeFacts)}


def agent_facts(branch_commits: list[str], status: dict[str, Any] | None) -> TreeFacts:
    """The facts of a ray agent: its branch's commits on the remote beyond base, and what its
    actor reports of its clone (`SessionActor.status`: "facts"; an actor of an older fleet
    version reports only the lists of its verdict, read back as facts here)."""
    clone = TreeFacts()
    if status is not None:
        reported = status.get("facts")
        if isinstance(reported, dict):
            known: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in reported.items()
                                     if k in _FACTS}
            clone = TreeFacts(**known)
        else:
            clone = TreeFacts(status=tuple(status.get("dirty", [])), commits=tuple(status.get("unpushed", [])),
                              stashes=tuple(status.get("stashes", [])),
                              markers=tuple(_MARKER.get(op, op) for op in status.get("in_progress", [])))
    # one commit both on the remote's branch and not pushed from the clone is counted once (judge)
    return replace(clone, commits=(*branch_commits, *clone.commits))


def sync_logs(obs: RayObserved) -> None:
    """Append what each actor's log gained since the last copy to the local session log."""
    ray = obs.ray
    assert ray is not None
    wanted = {}
    for name, session in obs.sessions.items():
        status = session.status
        if status is None:
            continue
        known = obs.ledger.setdefault(name, {})
        if known.get("instance") != status["instance"]:
            known.update(instance=status["instance"], log_offset=0)
        known["node"] = node_label(status)
        if status.get("log_size", 0) > known.get("log_offset", 0):
            wanted[name] = session.handle.read_log.remote(known["log_offset"])
    if wanted:
        ready, _ = ray.wait(list(wanted.values()), num_returns=len(wanted), timeout=cluster.PROBE_TIMEOUT * 5)
        for name, ref in wanted.items():
            if ref not in ready:
                continue
            try:
                data, _size = ray.get(ref)
            except ray.exceptions.RayActorError:
                continue
            append_log(obs, name, data)
    _logs_of_lost_actors(obs)
    if obs.ledger:
        obs.save_ledger()


def _logs_of_lost_actors(obs: RayObserved) -> None:
    """What a recorded session's actor that is gone (its node lost, or killed) shipped to the
    control actor beyond the local copy (lease.py): output no pass could read from its node."""
    lost = [name for name, agent in obs.agents.items()
            if agent.record is not None and agent.record.phase == RUNNING and name not in obs.sessions]
    if not lost:
        return
    ray = obs.ray
    assert ray is not None
    control = control_actor(ray, obs.namespace)
    for name in lost:
        try:
            kept = ray.get(control.get_log.remote(name), timeout=cluster.PROBE_TIMEOUT * 5)
        except ray.exceptions.RayError:
            continue
        known = obs.ledger.setdefault(name, {})
        if kept is None or known.get("copied") == kept["instance"]:
            continue
        # from where the local copy of that actor's log ends (nothing of it, for one no pass has seen)
        offset = known.get("log_offset", 0) if known.get("instance") == kept["instance"] else 0
        known.update(instance=kept["instance"], log_offset=offset)
        if kept["start"] > offset:  # older output was dropped on the cluster (lease.LOG_KEPT)
            append_log(obs, name, f"--- fleet: {kept['start'] - offset} bytes of this log were not kept\n".encode())
            known["log_offset"] = offset = kept["start"]
        append_log(obs, name, kept["data"][offset - kept["start"]:])
        known.update(copied=kept["instance"], instance=None)  # nothing more will come from it


def append_log(obs: RayObserved, name: str, data: bytes) -> None:
    if not data:
        return
    path = obs.state_store.log_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(data)
    known = obs.ledger.setdefault(name, {})
    known["log_offset"] = known.get("log_offset", 0) + len(data)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
