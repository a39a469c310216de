"""`fleet force-unlock FILE ID`."""
from __future__ import annotations

from rich.console import Console

from ..errors import EXIT_OK
from ..locking.fleet_lock import force_unlock
from ..observe.gitrepo import GitRepo
from ..observe.snapshot import fleet_home
from ..spec.loader import load_fleet


def run(*, file: str, lock_id: str, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    console.print(force_unlock(fleet_home(GitRepo(loaded.repo)), loaded.name, lock_id), markup=False)
    return EXIT_OK
