"""The desired state of one agent after expansion: everything the planner compares."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .models import FromEnv, Gate, Tier

DEFAULT_STALL_AFTER = 15 * 60.0


@dataclass(frozen=True)
class DesiredAgent:
    name: str
    index: int  # position in spec.agents, for error locations
    item: str | None
    tier_name: str
    tier: Tier
    prompt: str
    command: tuple[str, ...] | None
    gates: dict[str, Gate]
    restart: str
    protect: bool
    env: dict[str, str | FromEnv]
    base: str
    branch: str
    worktree: Path  # absolute
    locks: tuple[str, ...] = ()  # the fleet's lock names, so runtimes can tell agents about them
    timeout: float | None = None  # seconds one run may take; None = no limit
    stall_after: float | None = DEFAULT_STALL_AFTER  # seconds without progress before it is stopped
    deliver: bool = True  # spec.delivery: put its branch in the queue (policy, not the session's work)
    paths: tuple[str, ...] = ()  # declared scope (globs); empty: any file
    spec_hash: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec_hash", spec_hash(self.session_spec()))

    def session_spec(self) -> dict[str, Any]:
        """The fields whose change means the session must be re-run (replace/spawn).

        Gates, restart policy and protect are policy around the session, not its work,
        so changing them never kills a running agent.
        """
        return {
            "runtime": self.tier.runtime,
            "model": self.tier.model,
            "args": list(self.tier.args),
            "prompt": self.prompt,
            "command": list(self.command) if self.command else None,
            "env": {k: (v if isinstance(v, str) else {"fromEnv": v.fromEnv})
                    for k, v in sorted(self.env.items())},
            "base": self.base,
            "branch": self.branch,
        }


def spec_hash(session_spec: dict[str, Any]) -> str:
    """Stable short hash of a session spec: canonical JSON, sha256, 12 hex digits."""
    canonical = json.dumps(session_spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
