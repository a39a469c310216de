"""Plan actions: what fleet will do, to what, and why.

The kinds, their details and the JSON form are documented in docs/output.md
("Action kinds and their details"); they are part of the public interface.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CREATE_WORKTREE, SPAWN, RESUME, REPLACE, STOP = "create-worktree", "spawn", "resume", "replace", "stop"
RUN_GATE, PRUNE, WAIT, BLOCKED = "run-gate", "prune", "wait", "blocked"
# the merge queue (plan/delivery.py, docs/delivery.md): integrate a branch into the target and
# gate it; record a verdict the queue reached without merging; push the target (and its PR)
MERGE, DELIVER, PUSH = "merge", "deliver", "push"

SYMBOLS = {CREATE_WORKTREE: "+", SPAWN: "+", RESUME: "~", REPLACE: "-/+", STOP: "-",
           RUN_GATE: "~", PRUNE: "-", WAIT: "=", BLOCKED: "!", MERGE: "~", DELIVER: "~", PUSH: "~"}


@dataclass(frozen=True)
class Action:
    kind: str
    agent: str
    reason: str
    tier: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # changes, files, commits, pid...

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.kind]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    fleet: str
    actions: tuple[Action, ...]
    notes: tuple[str, ...] = ()  # things worth saying that are not actions (foreign worktrees)

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    @property
    def blocked(self) -> list[Action]:
        return [a for a in self.actions if a.kind == BLOCKED]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions:
            out[a.kind] = out.get(a.kind, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"apiVersion": "fleet/v1alpha1", "kind": "Plan", "fleet": self.fleet,
                "changes": self.has_changes, "summary": self.counts(),
                "actions": [a.to_json() for a in self.actions], "notes": list(self.notes)}
