"""The spec-level change between two versions of a fleet file (`fleet diff --base-rev REV`).

Not a text diff: both versions are loaded and validated, agents are expanded, and the
validated models are compared with deepdiff, so reformatting, comments and key order
are no change, while a tier's model change shows on the tier and on every agent whose
session it re-runs. Agents are matched by their expanded name.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FleetError
from ..spec.desired import DesiredAgent
from ..spec.loader import LoadedFleet, load_fleet_text

if TYPE_CHECKING:
    from ..observe.gitrepo import FileAtRevision

ADDED, REMOVED, CHANGED = "added", "removed", "changed"


@dataclass(frozen=True)
class Change:
    """One value that differs. `path` is dotted from spec (`tiers.worker.model`) or, for an
    agent, from the agent (`model`, `env.LOG_LEVEL`); a list changes as a whole."""

    path: str
    op: str  # added | removed | changed
    old: Any = None
    new: Any = None

    @property
    def section(self) -> str:
        return self.path.split(".", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "section": self.section, "op": self.op, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class AgentChange:
    name: str
    op: str  # added | removed | changed
    tier: str | None
    old_hash: str | None
    new_hash: str | None
    changes: tuple[Change, ...] = ()

    @property
    def rerun(self) -> bool:
        """The session spec changed: a running session is replaced, a finished one runs again."""
        return self.op == CHANGED and self.old_hash != self.new_hash

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "tier": self.tier, "rerun": self.rerun,
                "specHash": {"old": self.old_hash, "new": self.new_hash},
                "changes": [c.to_json() for c in self.changes]}


@dataclass(frozen=True)
class SpecDiff:
    fleet: str
    file: str
    rev: str
    commit: str | None
    base_found: bool  # the file existed (and validated) at rev
    settings: tuple[Change, ...] = ()
    agents: tuple[AgentChange, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def has_changes(self) -> bool:
        return bool(self.settings or self.agents)

    def agents_with(self, op: str) -> list[AgentChange]:
        return [a for a in self.agents if a.op == op]

    def summary(self) -> dict[str, int]:
        return {"agentsAdded": len(self.agents_with(ADDED)), "agentsRemoved": len(self.agents_with(REMOVED)),
                "agentsChanged": len(self.agents_with(CHANGED)),
                "agentsRerun": sum(a.rerun for a in self.agents), "settingsChanged": len(self.settings)}

    def to_json(self) -> dict[str, Any]:
        return {"apiVersion": "fleet/v1alpha1", "kind": "SpecDiff", "fleet": self.fleet, "file": self.file,
                "base": {"rev": self.rev, "commit": self.commit, "found": self.base_found},
                "changes": self.has_changes, "summary": self.summary(),
                "settings": [c.to_json() for c in self.settings],
                "agents": [a.to_json() for a in self.agents], "notes": list(self.notes)}


def load_base(at: FileAtRevision, file: Path) -> tuple[LoadedFleet | None, list[str]]:
    """The fleet file as it was at `at.rev`, expanded against that revision's tree.

    Returns (None, notes) when it did not exist there or does not validate: then every
    agent counts as added, and the notes say why.
    """
    shown = f"{at.rev}:{at.path}"
    if at.text is None:
        return None, [f"{at.path} does not exist at {at.rev}; everything in it is new"]
    try:
        loaded = load_fleet_text(at.text, path=file, shown=shown, files=at.files)
        if loaded.repo != at.root:  # spec.repo names another repo: its globs are not in this tree
            loaded = load_fleet_text(at.text, path=file, shown=shown)
    except FleetError as exc:
        first = exc.problems[0].render().splitlines()[0] if exc.problems else exc.message
        return None, [f"{shown} does not validate ({exc.message}: {first}); everything is shown as new"]
    return loaded, []


def diff_specs(old: LoadedFleet | None, new: LoadedFleet, *, rev: str, commit: str | None,
               file: str, notes: Sequence[str] = ()) -> SpecDiff:
    """What changed from `old` (None: nothing) to `new`, by validated value, not by text."""
    settings = _changes(_settings(old) if old else {}, _settings(new))
    old_agents = {a.name: a for a in old.agents} if old else {}
    new_agents = {a.name: a for a in new.agents}
    agents: list[AgentChange] = []
    for a in new.agents:
        before = old_agents.get(a.name)
        if before is None:
            agents.append(AgentChange(a.name, ADDED, a.tier_name, None, a.spec_hash))
            continue
        changes = _changes(_agent_view(before, old), _agent_view(a, new))  # type: ignore[arg-type]
        if changes:
            agents.append(AgentChange(a.name, CHANGED, a.tier_name, before.spec_hash, a.spec_hash, changes))
    agents += [AgentChange(a.name, REMOVED, a.tier_name, a.spec_hash, None)
               for a in (old.agents if old else ()) if a.name not in new_agents]
    return SpecDiff(fleet=new.name, file=file, rev=rev, commit=commit, base_found=old is not None,
                    settings=settings, agents=tuple(agents), notes=tuple(notes))


def _settings(loaded: LoadedFleet) -> dict[str, Any]:
    """Everything but the agent templates (agents are compared expanded), by spec path."""
    dumped = loaded.fleet.model_dump(mode="json")
    spec = dict(dumped["spec"])
    spec.pop("agents", None)
    return {"metadata": dumped["metadata"], **spec}


def _agent_view(agent: DesiredAgent, loaded: LoadedFleet) -> dict[str, Any]:
    """The session spec (whose change re-runs the session) plus the policy around it."""
    try:
        worktree = agent.worktree.relative_to(loaded.repo).as_posix()
    except ValueError:
        worktree = str(agent.worktree)
    return {"tier": agent.tier_name, **agent.session_spec(), "gates": list(agent.gates),
            "restart": agent.restart, "protect": agent.protect, "item": agent.item, "worktree": worktree}


def _changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[Change, ...]:
    from deepdiff import DeepDiff
    from deepdiff.helper import NotPresent

    found: dict[tuple[Any, ...], Change] = {}
    for report in DeepDiff(old, new, view="tree", verbose_level=2).values():
        for level in report:
            path = tuple(level.path(output_format="list"))
            cut = next((i for i, part in enumerate(path) if isinstance(part, int)), None)
            if cut is not None:  # lists (args, command, gates) change as a whole: easier to read
                path = path[:cut]
                before, after = _get(old, path), _get(new, path)
            else:
                before, after = level.t1, level.t2
            before = None if isinstance(before, NotPresent) else before
            after = None if isinstance(after, NotPresent) else after
            op = ADDED if not _has(old, path) else REMOVED if not _has(new, path) else CHANGED
            found.setdefault(path, Change(".".join(str(p) for p in path), op, _plain(before), _plain(after)))
    return tuple(found[k] for k in sorted(found, key=lambda p: [str(x) for x in p]))


def _get(doc: Any, path: Sequence[Any]) -> Any:
    for part in path:
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _has(doc: Any, path: Sequence[Any]) -> bool:
    for part in path:
        if not isinstance(doc, dict) or part not in doc:
            return False
        doc = doc[part]
    return True


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
