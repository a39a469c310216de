"""Pilot groups an operator promoted on purpose (`fleet promote GROUP`, docs/operations.md "Pilot runs").

One file, `<state dir>/promoted/promotions.json` (outside the records' glob): group name ->
when it was promoted. A promotion overrides the projection check; it holds until the
group's pilot state is gone (the group is deleted) or it is revoked.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import clock
from .records import write_json_atomic


def promotions_path(state_dir: Path) -> Path:
    return state_dir / "promoted" / "promotions.json"


def read_promotions(state_dir: Path) -> dict[str, str]:
    try:
        data = json.loads(promotions_path(state_dir).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def promote(state_dir: Path, group: str) -> None:
    """Record that `group` may start past its pilot (call it under the fleet lock)."""
    current = read_promotions(state_dir)
    current[group] = clock.now_iso()
    path = promotions_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, current)
