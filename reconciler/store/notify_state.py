"""What the notifier remembers between ticks and across restarts of the loop.

`<home>/notify/<fleet>.json`: `facts` (what the last tick saw, plan/notify.py `facts`),
`sent` (debounce key -> when last sent) and `failures` (the latest deliveries that failed,
newest last, shown by `fleet status`). Written atomically; unreadable means empty (the
next tick then records without announcing, as a first tick does).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import write_json_atomic

MAX_FAILURES = 10


@dataclass
class NotifyState:
    facts: dict[str, dict[str, Any]] | None = None  # None: no tick has recorded any yet
    sent: dict[str, str] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)  # {at, event, agent, target, error}


def state_path(home: Path, fleet: str) -> Path:
    return home / "notify" / f"{fleet}.json"


def load(path: Path) -> NotifyState:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return NotifyState()
    if not isinstance(data, dict):
        return NotifyState()
    facts, sent, failures = data.get("facts"), data.get("sent"), data.get("failures")
    return NotifyState(facts if isinstance(facts, dict) else None, sent if isinstance(sent, dict) else {},
                       [f for f in failures if isinstance(f, dict)] if isinstance(failures, list) else [])


def save(path: Path, state: NotifyState) -> None:
    write_json_atomic(path, {"facts": state.facts, "sent": state.sent, "failures": state.failures[-MAX_FAILURES:]})
