"""`fleet lock NAME [-f FILE] -- CMD...`: run CMD holding one slot of lock NAME."""
from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from ..errors import FleetError
from ..locking.slots import (
    ENV_LOCK_DIR,
    Say,
    check_lock_name,
    git_common_dir,
    read_lock_table,
    repo_lock_dir,
    run_locked,
)


def run(*, name: str, file: str | None, slots: int | None, timeout: float | None, command: list[str],
        console: Console, err: Console) -> int:
    check_lock_name(name)
    if not command:
        raise FleetError("no command to run", hint=f"fleet lock {name} -- CMD [ARGS...]")

    def say(message: str) -> None:
        err.print(message, markup=False, highlight=False, soft_wrap=True)

    if file is None and os.environ.get("FLEET_LOCK_RAY"):  # a session on a Ray node: the cluster's slots
        return _on_cluster(name, slots, timeout, command, say)
    env_dir = os.environ.get(ENV_LOCK_DIR) or None
    declared: int | None
    source: str
    if file is not None:
        lock_dir, declared = _from_fleet(file, name, env_dir)
        source = file
    else:
        lock_dir = Path(env_dir) if env_dir else _from_cwd()
        declared = read_lock_table(lock_dir).get(name)
        source = str(lock_dir / "locks.json")
    if declared is not None and slots is not None and slots != declared:
        say(f"fleet lock: ignoring --slots {slots}: lock {name} is declared with {declared} "
            f"slot{'s' if declared != 1 else ''} in {source}")
    return run_locked(command, lock_dir=lock_dir, name=name, slots=declared or slots or 1, timeout=timeout,
                      say=say)


def _from_fleet(file: str, name: str, env_dir: str | None) -> tuple[Path, int]:
    """Lock dir and slot count from FILE's fleet (FLEET_LOCK_DIR still wins for the dir)."""
    from ..spec.loader import load_fleet

    loaded = load_fleet(file)
    locks = loaded.fleet.spec.locks
    if name not in locks:
        declared = ", ".join(sorted(locks)) or "none"
        raise FleetError(f"lock {name!r} is not declared in {file} (declared locks: {declared})",
                         hint=f"add it under spec.locks, e.g. `{name}: {{slots: 1}}`, or use one of the declared "
                              "names")
    if env_dir:
        return Path(env_dir), locks[name].slots
    from ..observe.gitrepo import GitRepo

    return repo_lock_dir(GitRepo(loaded.repo).common_dir), locks[name].slots


def _from_cwd() -> Path:
    """`<git common dir>/fleet/locks` of the repo around the current directory (any of its worktrees)."""
    return repo_lock_dir(git_common_dir(Path.cwd()))


def _on_cluster(name: str, slots: int | None, timeout: float | None, command: list[str], say: Say) -> int:
    """The lock shared by every node of the fleet's Ray cluster (engines/ray/locks.py)."""
    from ..engines.ray import locks

    declared = locks.declared().get(name)
    if declared is not None and slots is not None and slots != declared:
        say(f"fleet lock: ignoring --slots {slots}: lock {name} is declared with {declared} "
            f"slot{'s' if declared != 1 else ''} in the fleet's spec.locks")
    return locks.run_on_cluster(command, name=name, slots=declared or slots or 1, timeout=timeout, say=say,
                                address=os.environ[locks.ENV_ADDRESS], namespace=os.environ[locks.ENV_NAMESPACE])
