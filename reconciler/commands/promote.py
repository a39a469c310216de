"""`fleet promote FILE GROUP`: start a rollout group past its pilot on purpose (docs/operations.md "Pilot runs")."""
from __future__ import annotations

from rich.console import Console

from ..errors import EXIT_OK, FleetError
from ..locking.fleet_lock import fleet_lock
from ..observe.gitrepo import GitRepo
from ..observe.snapshot import fleet_home, state_store
from ..spec.loader import load_fleet
from ..store.promotions import promote


def run(*, file: str, group: str, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    groups = [a.name for a in loaded.fleet.spec.agents if a.rollout is not None]
    if group not in groups:
        known = ", ".join(groups) or "none (no agent has rollout: {pilot: N})"
        raise FleetError(f"{file}: no rollout group named {group!r}; groups with a pilot: {known}",
                         hint="name the group as its agent entry's `name` is written, e.g. 'w-{item}'")
    repo = GitRepo(loaded.repo)
    with fleet_lock(fleet_home(repo), loaded.name, timeout=None, command="fleet promote"):
        promote(state_store(repo, loaded.name).dir, group)
    console.print(f"promoted {group}: its agents start on the next apply, whatever the pilot projection says",
                  markup=False)
    return EXIT_OK
