"""Where sessions run: the engine named by spec.placement.engine.

`local` (the default) is the rest of the package: git worktrees and detached processes
on this machine, driven by reconcile.py. Any other engine takes over observation and
execution for its fleets and reuses the planner, the state store and the safety rules;
reconcile.py (`preview`, `reconcile_once`), status.py and the `logs` and `delete`
commands ask `engine_for` and hand over when it returns one. An engine is imported only
when a fleet names it, so its dependencies stay optional (`pip install fleet-reconciler[ray]`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import FleetError

if TYPE_CHECKING:
    from ..spec.loader import LoadedFleet
    from .ray.engine import RayEngine


def engine_for(loaded: LoadedFleet) -> RayEngine | None:
    """The fleet's engine, or None for `local` (reconcile.py itself)."""
    engine = loaded.fleet.spec.placement.engine
    if engine == "local":
        return None
    if engine == "ray":
        from .ray.engine import RayEngine

        return RayEngine(loaded)
    raise FleetError(f"unknown placement engine {engine!r}", hint="spec.placement.engine: local or ray")
