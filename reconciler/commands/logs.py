"""`fleet logs FILE NAME [-f]`: a session's output."""
from __future__ import annotations

import sys
import time

from rich.console import Console

from ..engines import engine_for
from ..errors import EXIT_OK, FleetError
from ..observe.gitrepo import GitRepo
from ..observe.processes import is_alive
from ..observe.snapshot import fleet_home
from ..spec.loader import load_fleet
from ..store.records import StateStore


def run(*, file: str, name: str, follow: bool, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    if (engine := engine_for(loaded)) is not None:  # the session's output is on its node
        return engine.logs(name, follow=follow)
    store = StateStore(fleet_home(GitRepo(loaded.repo)), loaded.name)
    path = store.log_path(name)
    if not path.exists():
        known = ", ".join(a.name for a in loaded.agents)
        raise FleetError(f"no log for agent {name!r} in fleet {loaded.name}",
                         hint=f"agents: {known}" if loaded.agent(name) is None else "it has not run yet")
    with path.open("rb") as f:
        _copy(f)
        while follow:
            rec = store.load(name)
            if not _copy(f) and not (rec and is_alive(rec.pid, rec.create_time)):
                _copy(f)
                break
            time.sleep(0.2)
    return EXIT_OK


def _copy(f) -> bool:  # type: ignore[no-untyped-def]
    data = f.read()
    if data:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return bool(data)
