"""`fleet restore [FILE] NAME [ARCHIVE]`: bring an agent's archive back (branch, ownership, tree)."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ..act.restore import find_archive, restore
from ..act.worktrees import hide_root
from ..errors import EXIT_OK, FleetError
from ..locking.fleet_lock import fleet_lock
from ..observe.gitrepo import GitRepo
from ..observe.snapshot import fleet_home
from ..spec.loader import LoadedFleet, load_fleet


def run(*, file: str, name: str, archive: str | None, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    repo = GitRepo(loaded.repo)
    if loaded.fleet.spec.placement.engine == "ray":  # kept on spec.remote (engines/ray/restore.py)
        return _from_remote(loaded, name, archive, console, err)
    found = find_archive(repo, loaded.name, name, archive)
    declared = loaded.agent(name)
    branch = declared.branch if declared is not None else loaded.fleet.branch_prefix + name
    worktree = declared.worktree if declared is not None else loaded.worktrees_root / name
    with fleet_lock(fleet_home(repo), loaded.name, timeout=None, command="fleet restore",
                    on_wait=lambda m: err.print(f"[yellow]{escape(m)}[/]")):
        if any(w.path == worktree for w in repo.worktrees()[1]):
            raise FleetError(f"agent {name} has a worktree at {worktree} already",
                             hint=f"`fleet delete {file} {name} --archive` it first, or restore into another "
                                  "fleet file's agent")
        done = restore(repo, found, fleet=loaded.name, branch=branch, worktree=worktree)
        if done.worktree is not None:
            hide_root(repo, done.worktree.parent)
    console.print(f"restored {found.ref}:", markup=False)
    for line in done.lines:
        console.print(f"  {line}", markup=False)
    then = ("`fleet apply` starts it in the restored tree" if declared is not None
            else f"declare agent {name} again and `fleet apply`: it takes over the branch and tree")
    console.print(f"next: {then}", markup=False)
    return EXIT_OK


def _from_remote(loaded: LoadedFleet, name: str, archive: str | None, console: Console, err: Console) -> int:
    from ..engines.ray.restore import restore_from_remote

    with fleet_lock(fleet_home(GitRepo(loaded.repo)), loaded.name, timeout=None, command="fleet restore",
                    on_wait=lambda m: err.print(f"[yellow]{escape(m)}[/]")):
        done = restore_from_remote(loaded, name, archive)
    console.print(f"restored {done.archive.ref} from the remote:", markup=False)
    for line in done.lines:
        console.print(f"  {line}", markup=False)
    console.print(f"next: {done.next}", markup=False)
    return EXIT_OK
