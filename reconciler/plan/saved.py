"""Saved plans: `fleet diff FILE --out plan.json`, reviewed, then `fleet apply plan.json`.

A saved plan is the plan plus what it was made from: the fleet file (path and sha256
of its bytes), the expanded desired state (sha256), and a fingerprint of the observed
state the planner read (per agent: phase, pid, session, spec hash, worktree head,
work at stake; orphans; branches). Applying it re-loads the spec and re-observes
under the fleet lock, and refuses, saying what moved, if any of that changed, as a
stale Terraform plan is refused; otherwise it executes exactly the saved actions.

Pure apart from reading and writing the plan file: no git, no processes.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import FleetError
from ..observe.model import Observed
from ..spec.loader import LoadedFleet, load_fleet
from ..store import clock
from .actions import Action, Plan
from .planner import plan as make_plan

KIND = "SavedPlan"
API_VERSION = "fleet/v1alpha1"
_REMAKE = "make a new plan with `fleet diff {file} --out PLAN`, review it, then `fleet apply PLAN`"


@dataclass(frozen=True)
class SavedPlan:
    plan: Plan
    file: Path  # absolute path of the fleet file
    file_sha256: str
    desired_sha256: str
    observed: dict[str, Any]  # fingerprint(), kept whole so a refusal can say what moved
    targets: tuple[str, ...] = ()
    archive: bool = False
    created_at: str = ""
    version: str = __version__

    def to_json(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": KIND, "fleet": self.plan.fleet, "createdAt": self.created_at,
                "fleetVersion": self.version,
                "source": {"file": str(self.file), "sha256": self.file_sha256, "desiredSha256": self.desired_sha256},
                "options": {"targets": list(self.targets), "archive": self.archive},
                "observed": {"sha256": _digest(self.observed), "state": self.observed},
                "plan": self.plan.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, shown: str) -> SavedPlan:
        try:
            plan = data["plan"]
            source, options = data["source"], data.get("options", {})
            return cls(plan=Plan(fleet=plan["fleet"], actions=tuple(Action(**a) for a in plan["actions"]),
                                 notes=tuple(plan.get("notes", ()))),
                       file=Path(source["file"]), file_sha256=source["sha256"],
                       desired_sha256=source["desiredSha256"], observed=data["observed"]["state"],
                       targets=tuple(options.get("targets", ())), archive=bool(options.get("archive", False)),
                       created_at=data.get("createdAt", ""), version=data.get("fleetVersion", ""))
        except (KeyError, TypeError) as exc:
            raise FleetError(f"{shown}: not a valid saved plan (missing or wrong {exc})",
                             hint="make it with `fleet diff FILE --out PLAN`") from None


def save(loaded: LoadedFleet, observed: Observed, plan: Plan, *, targets: Iterable[str] = (),
         archive: bool = False) -> SavedPlan:
    """The saved form of a plan just made from `loaded` and `observed`."""
    from ..store.records import now_iso

    return SavedPlan(plan=plan, file=loaded.path.resolve(), file_sha256=file_digest(loaded.path),
                     desired_sha256=desired_digest(loaded), observed=fingerprint(loaded, observed),
                     targets=tuple(targets), archive=archive, created_at=now_iso())


def write(saved: SavedPlan, path: str | Path) -> None:
    from ..store.records import write_json_atomic

    write_json_atomic(Path(path), saved.to_json())


def to_text(saved: SavedPlan) -> str:
    return json.dumps(saved.to_json(), indent=2, sort_keys=True)


def read_if_saved(path: str | Path) -> SavedPlan | None:
    """The saved plan in `path`, or None when `path` is something else (a fleet file).

    Told apart by content, not by name: a JSON object with kind SavedPlan."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(data, dict) and data.get("kind") == "Plan" and "actions" in data:
        raise FleetError(f"{path} is `fleet diff -o json` output, which records no source to check against",
                         hint="save a plan for apply with `fleet diff FILE --out PLAN` (or `-o plan > PLAN`)")
    if not isinstance(data, dict) or data.get("kind") != KIND:
        return None
    if data.get("apiVersion") != API_VERSION:
        raise FleetError(f"{path}: saved plan apiVersion {data.get('apiVersion')!r} is not {API_VERSION}",
                         hint=_REMAKE.format(file="FILE"))
    saved = SavedPlan.from_json(data, shown=str(path))
    if saved.version != __version__:
        raise FleetError(f"{path} was made by fleet {saved.version or '(unknown)'}; this is fleet {__version__}",
                         hint=_REMAKE.format(file=saved.file))
    return saved


def load_spec(saved: SavedPlan) -> LoadedFleet:
    """Re-load the fleet file the plan was made from; refuse if it changed since."""
    if not saved.file.is_file():
        raise FleetError(f"spec changed since the plan was made: {saved.file} no longer exists",
                         hint=_REMAKE.format(file=saved.file))
    now = file_digest(saved.file)
    if now != saved.file_sha256:
        raise FleetError(f"spec changed since the plan was made: {saved.file} sha256 "
                         f"{saved.file_sha256[:12]} -> {now[:12]}", hint=_REMAKE.format(file=saved.file))
    loaded = load_fleet(saved.file)
    if desired_digest(loaded) != saved.desired_sha256:
        raise FleetError(f"spec changed since the plan was made: {saved.file} is the same, but it expands to "
                         "other desired state (a forEach glob matches other files, or the repo moved)",
                         hint=_REMAKE.format(file=saved.file))
    if loaded.name != saved.plan.fleet:
        raise FleetError(f"the plan is for fleet {saved.plan.fleet}, {saved.file} declares {loaded.name}")
    return loaded


def checker(saved: SavedPlan, loaded: LoadedFleet) -> Callable[[Observed], Plan]:
    """A planner for `reconcile_once` that returns the saved plan, or refuses if it is stale.

    Two checks: the observed fingerprint (says exactly what moved), then a fresh plan
    from the same inputs must have the same actions, which also catches what depends
    on time (a backoff that ran out, a new UTC day for the budget)."""
    def check(observed: Observed) -> Plan:
        reasons = moved(saved.observed, fingerprint(loaded, observed))
        if reasons:
            more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
            raise FleetError("observed state moved since the plan was made: " + "; ".join(reasons[:3]) + more,
                             hint=_REMAKE.format(file=saved.file))
        fresh = make_plan(loaded, observed, clock.now(), targets=saved.targets, archive=saved.archive)
        if (why := _differs(saved.plan, fresh)) is not None:
            raise FleetError(f"the plan would now be different: {why}", hint=_REMAKE.format(file=saved.file))
        return saved.plan

    return check


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def desired_digest(loaded: LoadedFleet) -> str:
    """sha256 of the validated model and its expansion (forEach globs resolve against files)."""
    agents = [{"name": a.name, "specHash": a.spec_hash, "tier": a.tier_name, "restart": a.restart,
               "protect": a.protect, "gates": {n: g.model_dump(mode="json") for n, g in a.gates.items()},
               "worktree": str(a.worktree)} for a in loaded.agents]
    return _digest({"fleet": loaded.fleet.model_dump(mode="json"), "repo": str(loaded.repo), "agents": agents})


def fingerprint(loaded: LoadedFleet, observed: Observed) -> dict[str, Any]:
    """The observed state a plan depends on, as plain JSON, stable while nothing moves.

    Leaves out what changes by itself without changing the world (timestamps, the
    backoff deadline derived from now) and what apply itself syncs from the spec
    before planning (`protect` of declared agents, which the spec digest covers)."""
    declared = {a.name for a in loaded.agents}
    agents: dict[str, Any] = {}
    for name, obs in sorted(observed.agents.items()):
        rec, wt, stake = obs.record, obs.worktree, obs.at_stake
        entry: dict[str, Any] = {"phase": obs.phase, "alive": obs.alive, "adopted": obs.adopted,
                                 "pid": rec.pid if rec and obs.alive else None, "exitCode": obs.exit_code,
                                 "branch": obs.branch}
        if rec is not None:
            entry.update({"specHash": rec.spec_hash, "sessionId": rec.session_id, "tier": rec.tier,
                          "attempts": rec.attempts, "costUsd": round(rec.cost_usd, 6)})
            for key in ("restarts", "gates_pending", "gates_exhausted", "gate_failures"):
                if hasattr(rec, key):  # gate and backoff bookkeeping
                    entry[_camel(key)] = getattr(rec, key)
            if (feedback := getattr(rec, "gate_feedback", False)) is not False:
                entry["gateFeedback"] = feedback is not None
        if name not in declared:  # the record's, or the one kept in the marker and branch config
            entry["protect"] = obs.protected
        if wt is not None:
            entry["worktree"] = {"path": str(wt.path), "head": wt.head, "branch": wt.branch,
                                 "owned": wt.owner is not None, "exists": wt.exists, "locked": wt.locked}
        if stake is not None:
            entry["atStake"] = {"files": stake.dirty, "commits": stake.commits, "stashes": stake.stashes,
                                "inProgress": stake.in_progress, "processes": stake.processes,
                                "locked": stake.locked}
        agents[name] = entry
    return {"baseExists": observed.base_exists, "agents": agents,
            "orphans": sorted(({"pid": p.pid, "agent": p.agent, "specHash": p.spec_hash} for p in observed.orphans),
                              key=lambda p: p["pid"]),
            "foreign": sorted(str(w.path) for w in observed.foreign),
            "checkedOut": {b: str(p) for b, p in sorted(observed.checked_out.items())},
            "ownedBranches": sorted(observed.owned_branches)}


def moved(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words: 'agent a phase Running -> Succeeded'."""
    reasons: list[str] = []
    old_agents, new_agents = before.get("agents", {}), after.get("agents", {})
    for name in sorted(set(old_agents) | set(new_agents)):
        if name not in old_agents:
            reasons.append(f"agent {name} appeared (a new worktree, branch, session or record)")
        elif name not in new_agents:
            reasons.append(f"agent {name} is gone (its worktree, branch and record were removed)")
        else:
            flat_old, flat_new = _flatten(old_agents[name]), _flatten(new_agents[name])
            keys = sorted(set(flat_old) | set(flat_new), key=lambda k: (k != "phase", k))
            reasons += [f"agent {name} {k} {_show(flat_old.get(k))} -> {_show(flat_new.get(k))}"
                        for k in keys if flat_old.get(k) != flat_new.get(k)]
    for key in sorted((set(before) | set(after)) - {"agents"}):
        if before.get(key) != after.get(key):
            reasons.append(f"{_words(key)} {_show(before.get(key))} -> {_show(after.get(key))}")
    return reasons


def _differs(saved: Plan, fresh: Plan) -> str | None:
    def shape(plan: Plan) -> list[str]:
        return [f"{a.kind} {a.agent}" for a in plan.actions]

    old, new = shape(saved), shape(fresh)
    if old == new:
        return None
    for i in range(max(len(old), len(new))):
        a = old[i] if i < len(old) else "(nothing)"
        b = new[i] if i < len(new) else "(nothing)"
        if a != b:
            why = next((x.reason for x in fresh.actions[i:i + 1]), "")
            return f"action {i + 1} was `{a}`, now `{b}`" + (f" ({why})" if why else "")
    return None  # pragma: no cover - lists differ, so some position does


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value[:12] if len(value) == 40 and all(c in "0123456789abcdef" for c in value) else value
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:79] + "…"


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


def _words(key: str) -> str:
    return {"baseExists": "base ref exists", "orphans": "orphan sessions", "foreign": "foreign worktrees",
            "checkedOut": "branches checked out elsewhere", "ownedBranches": "fleet branches"}.get(key, key)


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
