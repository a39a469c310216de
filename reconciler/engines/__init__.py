"""Where sessions run: the engine named by spec.placement.engine (docs/architecture.md).

- base.py      the `Engine` protocol every engine implements
- executor.py  executing a plan on any engine, with the one record lifecycle
- local.py     `local` (the default): git worktrees and detached processes on this machine
- ray/         `ray`: sessions as actors on a Ray cluster (docs/scale-out.md)

An engine other than local is imported only when a fleet names it, so its dependencies
stay optional (`pip install fleet-reconciler[ray]`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import FleetError

if TYPE_CHECKING:
    from ..spec.loader import LoadedFleet
    from ..store.memo import Memo
    from .base import Engine


def engine_for(loaded: LoadedFleet, *, connect: bool = True, memo: Memo[Any] | None = None) -> Engine:
    """The fleet's engine, as spec.placement.engine names it. `connect=False` (`fleet diff`
    without --connect): an engine whose sessions run elsewhere observes only local state,
    opening no connection to the places the file names. `memo`: what the running loop
    remembers between ticks (store/memo.py; the local engine reads with it)."""
    engine = loaded.fleet.spec.placement.engine
    if engine == "local":
        from .local import LocalEngine

        return LocalEngine(loaded, memo=memo)
    if engine == "ray":
        from .ray.engine import RayEngine

        return RayEngine(loaded, connect=connect)
    raise FleetError(f"unknown placement engine {engine!r}", hint="spec.placement.engine: local or ray")
